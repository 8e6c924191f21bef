"""The review page end to end in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Not skipped when Chromium is missing: install `chromium chromium-driver`, or set SPINEBENCH_NO_BROWSER=1 to
skip on a machine that cannot have them (CI never sets it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_review import PLANTED, copy_work, qa_rows
from werkzeug.serving import make_server

from build import decisions, items
from build.review import HOST, Handler, create_app
from spinebench import LETTERS

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TIMED = 10  # items accepted with the keyboard to measure the time per item


class Quiet(Handler):
    def log_request(self, *args: object) -> None:
        """No line per request in the test output."""


@pytest.fixture
def server(built, tmp_path) -> Iterator[tuple[str, Path]]:
    """The app on a free 127.0.0.1 port in a background thread: (base URL, work folder)."""
    work = copy_work(built, tmp_path)
    httpd = make_server(HOST, 0, create_app(work, work / items.DECISIONS, ""), threaded=True,
                        request_handler=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{httpd.server_port}", work
    httpd.shutdown()
    thread.join()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if os.environ.get("SPINEBENCH_NO_BROWSER") == "1":
        pytest.skip("SPINEBENCH_NO_BROWSER=1")
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    assert not missing, f"{missing} missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def shown(driver: webdriver.Chrome, item_id: str) -> None:
    """Wait until the page shows `item_id` with its image loaded."""
    loaded = "const i = document.getElementById('image'); return i.complete && i.naturalWidth > 0"
    WebDriverWait(driver, 10, poll_frequency=0.02).until(
        lambda d: d.find_element(By.ID, "item-id").text == item_id and d.execute_script(loaded))


def press(driver: webdriver.Chrome, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def test_review_with_keyboard_and_mouse_then_resume(server, browser, tmp_path):
    url, work = server
    ids = list(qa_rows(work))
    browser.get(url)
    shown(browser, ids[0])
    text = browser.find_element(By.ID, "status")

    press(browser, "a")  # no reviewer yet: refused on the page, nothing written
    WebDriverWait(browser, 5).until(lambda d: "reviewer" in text.text)
    browser.find_element(By.ID, "reviewer").send_keys("kim", Keys.ESCAPE)  # Esc leaves the field

    started = time.perf_counter()
    for index in range(TIMED):
        press(browser, "a")
        shown(browser, ids[index + 1])
    per_item = (time.perf_counter() - started) / TIMED
    print(f"\nkeyboard path: {per_item * 1000:.0f} ms per item (accept + next item and image shown)")

    press(browser, "r")  # ids[10]
    shown(browser, ids[11])
    press(browser, "f")  # ids[11]
    shown(browser, ids[12])
    press(browser, "n", Keys.ARROW_RIGHT)  # skip 12 and 13
    shown(browser, ids[14])
    press(browser, "p")
    shown(browser, ids[13])
    press(browser, Keys.ARROW_LEFT)
    shown(browser, ids[12])

    note = browser.find_element(By.ID, "note")  # the mouse path, with a note
    note.click()
    note.send_keys("rib <b>shadow</b>")
    browser.find_element(By.CSS_SELECTOR, ".decide .reject").click()
    shown(browser, ids[13])
    rows = qa_rows(work)
    other = next(option for option in rows[ids[13]]["options"] if option != rows[ids[13]]["disease"])
    browser.find_element(By.CSS_SELECTOR, f"#correct-choices input[value='{other}']").click()
    browser.find_element(By.CSS_SELECTOR, "#correct button").click()
    shown(browser, ids[14])

    found, refused = decisions.read(work / items.DECISIONS, rows)
    assert refused == []
    assert [found[i].decision for i in ids[:14]] == ["accept"] * 10 + ["reject", "flag", "reject", "correct"]
    assert found[ids[12]].note == "rib <b>shadow</b>" and found[ids[13]].fields == {"disease": other}
    assert {d.reviewer for d in found.values()} == {"kim"}

    browser.refresh()  # a reload resumes at the first unreviewed item, with the reviewer remembered
    shown(browser, ids[14])
    assert browser.find_element(By.ID, "progress").text == f"14 / {len(ids)} reviewed"
    assert browser.find_element(By.ID, "reviewer").get_attribute("value") == "kim"

    Select(browser.find_element(By.NAME, "task")).select_by_value("localization")
    localization = [i for i in ids if rows[i]["task"] == "localization"]
    shown(browser, localization[0])
    browser.get(url)  # reopened without a query: the last filter comes back
    shown(browser, localization[0])
    assert "task=localization" in browser.current_url

    planted = next(i for i in ids if rows[i]["question"] == PLANTED)
    browser.get(f"{url}/?item={planted}")
    shown(browser, planted)
    assert browser.find_element(By.ID, "question").text == PLANTED  # shown as text, not markup
    assert browser.execute_script("return window.planted") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#question *")
    gold = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#options li.gold")]
    wanted = [f"{letter}. {text}" for letter, text in zip(LETTERS, rows[planted]["options"])
              if letter in rows[planted]["answer"]]
    assert len(gold) == len(wanted) and all(g.startswith(w) for g, w in zip(gold, wanted))

    screenshot = tmp_path / "review.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")


def test_gallery_links_thumbnails_to_items(server, browser, tmp_path):
    url, work = server
    rows = qa_rows(work)
    browser.get(f"{url}/gallery?per=12")
    thumb = browser.find_element(By.CSS_SELECTOR, ".thumb")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(  # the first screenful (the rest load lazily)
        "return [...document.images].slice(0, 8).every(i => i.complete && i.naturalWidth > 0)"))
    screenshot = tmp_path / "gallery.png"
    browser.save_screenshot(str(screenshot))
    print(f"\nscreenshot: {screenshot}")
    item_id = thumb.find_element(By.TAG_NAME, "img").get_attribute("alt")
    thumb.click()
    shown(browser, item_id)
    assert browser.find_element(By.NAME, "disease").get_attribute("value") == rows[item_id]["disease"]
