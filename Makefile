# The README's two commands: `make demo` (the main job on the synthetic replicas) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= out/demo
SCALE ?= 1

BROWSER := /usr/bin/chromedriver  # Debian's chromium + driver for the review page's browser tests

.PHONY: venv demo test clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m evaluation.offline   # lighteval must not fetch tinyBenchmarks.pkl at import
	touch $@

demo: venv
	$(PY) -m build replicas --out $(OUT)/raw --scale $(SCALE)
	$(PY) -m build run --raw $(OUT)/raw --out $(OUT) || [ $$? -eq 3 ]   # 3: the replicas plant bad files on purpose

$(BROWSER):
	apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver

test: venv $(BROWSER)
	$(PY) -m pytest -q

clean:
	rm -rf out
