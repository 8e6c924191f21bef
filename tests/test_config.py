"""Every configs/ file is checked against its schema when it is loaded (build/config.py): a typo stops the
build before anything is written, with the file, the key and what is allowed; it never changes the build.
The tests break a copy of configs/ the way a person would, by editing the YAML text."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import spinebench
from build import config
from build.__main__ import main as build_main
from build.errors import USAGE_EXIT
from spinebench import CONFIGS_DIR


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """A copy of configs/ that the test may break; build.config and the builder read it instead."""
    folder = tmp_path / "configs"
    shutil.copytree(CONFIGS_DIR, folder)
    monkeypatch.setattr(config, "CONFIGS_DIR", folder)
    monkeypatch.setattr(spinebench, "CONFIGS_DIR", folder)
    config.load.cache_clear()
    yield folder
    config.load.cache_clear()


def edit(folder: Path, name: str, old: str, new: str, count: int = 1) -> Path:
    """Replace the first `count` occurrences of `old` in configs/<name>.yaml (which must hold them)."""
    path = folder / f"{name}.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= count, (name, old)
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    config.load.cache_clear()
    return path


def test_the_shipped_configs_are_valid():
    for name in config.SCHEMAS:
        assert config.load(name)
    assert config.profile("clinical")["name"] == "clinical"


LICENCE_TYPO = ("sources", "  redistribution: pointer\nvindr:", "  redistribution: Pointer\nvindr:")
MISTAKES = [  # (file, old text, new text, what the message must say)
    (*LICENCE_TYPO, r"rsna\.redistribution: Input should be 'embed' or 'pointer' \(found 'Pointer'\)"),
    ("sources", "  redistribution: embed\ncsxa:", "\ncsxa:", r"buu\.redistribution: missing key"),
    ("sources", "  url: https://physionet", "  ulr: https://physionet",
     r"vindr\.ulr: unknown key; allowed keys: name, modality, licence, url, redistribution"),
    ("sources", "modality: MRI", "modality: MR", r"rsna\.modality: Input should be 'X-ray' or 'MRI'"),
    ("profiles", "shard_rows: 500", "shard_rows: 0", r"paper\.imaging\.shard_rows: Input should be greater "
                                                     r"than or equal to 1 \(found 0\)"),
    ("profiles", "max_side: 512 ", 'max_side: "512" ', r"paper\.imaging\.max_side: Input should be a valid "
                                                      r"integer \(found '512'\)"),
    ("profiles", "    exclude_present: true", "    exclude_presents: true",
     r"clinical\.items\.exclude_present: missing key; clinical\.items\.exclude_presents: unknown key; "
     r"allowed keys: library_per_disease, similarity, exclude_present, modality_aware"),
    ("profiles", "similarity: mean ", "similarity: median ",
     r"paper\.items\.similarity: Input should be 'mean' or 'max' \(found 'median'\)"),
    ("profiles", "percentile_window: [0.5, 99.5]", "percentile_window: [99.5, 0.5]",
     r"paper\.imaging\.percentile_window: the low percentile must be below the high one"),
    ("profiles", "rsna_grades: [Moderate, Severe]", "rsna_grades: [moderate, Severe]",
     r"clinical\.labels\.rsna_grades\.0: Input should be 'Normal/Mild', 'Moderate', 'Severe' or None"),
    ("labels", "Osteophytes: Osteophytes", "Osteophytes: Osteophyte",
     r"sources\.vindr: 'Osteophyte' is not a disease of `diseases`; allowed: 'Disc space narrowing', "),
    ("labels", "mesh: D054850, ", "", r"diseases\.3\.mesh: missing key"),
    ("labels", "primary_priority:", "primary_priorities:", r"primary_priorities: unknown key; allowed keys: "
                                                           r"diseases, primary_priority, sources"),
    ("questions", '{id: sdd-02, text: "', '{id: sdd-02, txt: "',
     r"diagnosis\.1\.text: missing key; diagnosis\.1\.txt: unknown key; allowed keys: id, text"),
    ("questions", "id: sll-03,", "id: sll-02,", r"question ids used twice: sll-02"),
    ("csxa", "class_key: [curvature", "class_kye: [curvature",
     r"class_key: missing key; class_kye: unknown key; allowed keys: root_marker, images, annotation, "
     r"metadata, class_from, class_key, classes, region, view"),
    ("csxa", "  patient: [patient_id", "  patinet: [patient_id",
     r"metadata\.patinet: unknown key; allowed keys: file, sheet, key, patient, sex, age"),
    ("csxa", "\nclass_from: metadata ", "\nclass_from: meta ",
     r"class_from: Input should be 'metadata' or 'annotation' \(found 'meta'\)"),
    ("csxa", "view: lateral", "view: 7", r"view: Input should be 'AP', 'PA' or 'lateral' \(found 7\)"),
]


@pytest.mark.parametrize("name, old, new, message", MISTAKES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_config_mistake_is_named_by_file_key_and_allowed_values(configs, name, old, new, message):
    path = edit(configs, name, old, new)
    with pytest.raises(config.ConfigError) as raised:
        config.load(name)
    text = str(raised.value)
    assert text.startswith(f"{path}: "), text
    assert re.search(message, text), text
    with pytest.raises(config.ConfigError):
        config.load_all()  # what every stage calls before its first write


def test_a_file_that_is_not_yaml_or_not_there_is_a_config_error(configs):
    (configs / "questions.yaml").write_text("diagnosis: [unclosed\n", encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"questions\.yaml: not valid YAML"):
        config.load("questions")
    (configs / "labels.yaml").unlink()
    with pytest.raises(config.ConfigError, match=r"labels\.yaml: cannot be read \(No such file"):
        config.load("labels")


def test_an_unknown_profile_raises_and_only_the_cli_exits(capsys):
    with pytest.raises(config.ConfigError, match=r"unknown profile 'papr'; .*profiles\.yaml has paper, clinical"):
        config.profile("papr")
    assert build_main(["standardize", "x.dcm", "--out", "y", "--profile", "papr"]) == USAGE_EXIT
    assert capsys.readouterr().err.startswith("error: unknown profile 'papr'")


def test_a_profile_changed_after_loading_is_checked_again():
    profile = config.profile("paper")
    config.check_profile(profile)
    broken = {**profile, "imaging": {**profile["imaging"], "shard_rows": 0}}
    with pytest.raises(config.ConfigError, match=r"imaging\.shard_rows: Input should be greater than or equal"):
        config.check_profile(broken)


def test_the_licence_typo_stops_a_public_export_before_anything_is_written(configs, built, tmp_path, capsys):
    """The red team's finding: `redistribution: Pointer` for RSNA made `export --public` embed RSNA pixels."""
    edit(configs, *LICENCE_TYPO)
    out = tmp_path / "out"
    code = build_main(["export", "--work", str(built.work), "--out", str(out), "--public"])
    assert code == USAGE_EXIT
    err = capsys.readouterr().err
    assert "sources.yaml: rsna.redistribution: Input should be 'embed' or 'pointer'" in err, err
    assert not out.exists()
    # the builder, which reads sources.yaml itself, fails closed: a value that is not `embed` withholds pixels
    assert spinebench._pointer_sources() == {"rsna", "vindr"}
