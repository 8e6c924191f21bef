"""Each rule of the Hub-folder check, made to fire by a folder broken in exactly that way.

The folders are the small evaluation fixture (tests/hub_fixture.py) with mini as default and the build's
counts recorded, so the unbroken folder passes; each test breaks one thing and asserts the problem that
names it, so deleting any one rule from build/hubcheck.py fails its test here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Features, Value
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard

from build import hubcheck
from hub_fixture import MINI, fixture_rows, write_hub_folder
from spinebench import BUILD_INFO


def counts(rows: dict[str, list[dict]], full: tuple[str, ...] = ("diagnosis", "localization")) -> dict:
    """Rows per configuration as the build records them in spinebench_build.json."""
    mini = rows.get("mini", [row for task in rows.values() for row in task if row["id"] in MINI])
    return {"full": sum(len(rows[name]) for name in full), "diagnosis": len(rows["diagnosis"]),
            "localization": len(rows["localization"]), "mini": len(mini)}


def folder(root: Path, rows: dict[str, list[dict]] | None = None, recorded: dict | None = None,
           full: tuple[str, ...] = ("diagnosis", "localization"), default: str = "mini") -> Path:
    rows = rows or fixture_rows()
    write_hub_folder(root, rows, default=default, full=full)
    info = {"counts": recorded or counts(rows, full)}
    (root / BUILD_INFO).write_text(json.dumps(info), encoding="utf-8")
    return root


def problems(path: Path) -> list[str]:
    return hubcheck.check(path).problems


def test_the_unbroken_folder_passes(tmp_path):
    result = hubcheck.check(folder(tmp_path))
    assert result.ok, result.problems
    assert result.figures["rows"] == counts(fixture_rows())


def test_a_python_file_at_the_root(tmp_path):
    (folder(tmp_path) / "spinebench.py").write_text("", encoding="utf-8")
    assert any(p.startswith("Python files at the root") and "spinebench.py" in p for p in problems(tmp_path))


def test_a_missing_card(tmp_path):
    (folder(tmp_path) / "README.md").unlink()
    assert "README.md is missing" in problems(tmp_path)


def _edit_card(path: Path, change) -> None:
    card = DatasetCard.load(path / "README.md")
    change(card.data)
    card.save(path / "README.md")


def test_a_configuration_missing_from_the_card(tmp_path):
    _edit_card(folder(tmp_path), lambda data: data.configs.pop())  # the last: mini
    assert any(p.startswith("card declares configs") for p in problems(tmp_path))


def test_mini_not_the_default(tmp_path):
    assert "mini is not the default configuration" in problems(folder(tmp_path, default="full"))


def test_card_features_that_differ_from_the_schema(tmp_path):
    def rename_a_column(data) -> None:
        infos = DatasetInfosDict.from_dataset_card_data(data)
        infos["diagnosis"].features = Features({"id": Value("string")})
        infos.to_dataset_card_data(data)

    _edit_card(folder(tmp_path), rename_a_column)
    assert "card features of diagnosis differ from spinebench.FEATURES" in problems(tmp_path)


def test_loaded_features_that_differ_from_the_schema(tmp_path):
    """A card without features and a Parquet file without datasets' schema note: the image column loads as
    a plain struct. The card check stops such a folder before its rows are read, so they are checked here."""
    path = folder(tmp_path)
    _edit_card(path, lambda data: data.pop("dataset_info"))
    (mini,) = (path / "data" / "mini").glob("*.parquet")
    pq.write_table(pq.read_table(mini).replace_schema_metadata(None), mini)
    result = hubcheck.CheckResult(path)
    hubcheck.check_rows(path, result)
    assert result.problems == ["mini: loaded features differ from spinebench.FEATURES"]


@pytest.mark.parametrize("limit, message", [("ROW_GROUP_LIMIT_MB", "a row group exceeds"),
                                            ("IMAGE_LIMIT_KB", "an image exceeds")])
def test_size_limits(tmp_path, monkeypatch, limit, message):
    monkeypatch.setattr(hubcheck, limit, -1)  # the fixture is tiny (its rounded figures are 0): below any size
    assert any(p.startswith(message) for p in problems(folder(tmp_path)))


def test_four_options_or_a_repeated_option(tmp_path):
    rows = fixture_rows()
    rows["diagnosis"][1]["options"] = rows["diagnosis"][1]["options"][:4]
    options = rows["diagnosis"][2]["options"]
    rows["diagnosis"][2]["options"] = [*options[:4], options[3]]  # a new list: fixture_rows shares its lists
    found = problems(folder(tmp_path, rows))
    assert any(p.startswith("diagnosis/sdd-1: options") for p in found), found
    assert any(p.startswith("diagnosis/sdd-2: options") for p in found), found


@pytest.mark.parametrize("answer", [["F"], []])
def test_an_answer_not_among_the_options(tmp_path, answer):
    rows = fixture_rows()
    rows["localization"][0]["answer"] = answer
    found = problems(folder(tmp_path, rows))
    assert f"localization/sll-0: answer {answer} not among the options" in found, found


def test_duplicate_ids(tmp_path):
    rows = fixture_rows()
    rows["diagnosis"][1]["id"] = rows["diagnosis"][0]["id"]
    found = problems(folder(tmp_path, rows))
    assert "diagnosis: duplicate ids" in found and "full: duplicate ids" in found, found


def test_counts_that_differ_from_the_build_record(tmp_path):
    rows = fixture_rows()
    recorded = counts(rows) | {"localization": 99}
    found = problems(folder(tmp_path, rows, recorded))
    assert f"localization: {len(rows['localization'])} rows, the build recorded 99" in found, found


def test_full_that_is_not_diagnosis_plus_localization(tmp_path):
    rows = fixture_rows()
    rows["mini"] = [row for row in rows["diagnosis"] if row["id"] in MINI]  # keep mini within full
    found = problems(folder(tmp_path, rows, full=("diagnosis",)))
    assert found == ["full is not diagnosis + localization"]


def test_mini_with_an_id_full_lacks(tmp_path):
    rows = fixture_rows()
    stray = dict(rows["diagnosis"][0], id="sdd-99")
    rows["mini"] = [row for task in rows.values() for row in task if row["id"] in MINI] + [stray]
    assert problems(folder(tmp_path, rows)) == ["mini has ids that full lacks"]


def test_every_rule_of_the_check_has_a_test_here():
    """A new rule in hubcheck.py needs its broken folder above: count the problem strings it can add."""
    source = Path(hubcheck.__file__).read_text(encoding="utf-8")
    assert source.count("problems.append(") == 14
