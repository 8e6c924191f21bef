"""Checks on a Hub folder before anyone loads or uploads it, and the size figures the viewer cares about.

A folder passes when its card YAML parses with the datasets library's own readers, every configuration
loads through `load_dataset(folder, name)` exactly as from the Hub, and the rows keep the benchmark's
invariants (unique ids, five options, gold letters among them, full = diagnosis + localization, mini within
full, counts as recorded by the build).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard

from spinebench import BUILD_INFO, CONFIG_NAMES, FEATURES, LETTERS, SPLIT

ROW_GROUP_LIMIT_MB = 300  # the viewer refuses larger row groups
IMAGE_LIMIT_KB = 1024  # keep each image well under 1-2 MB


@dataclass
class CheckResult:
    folder: Path
    problems: list[str] = field(default_factory=list)
    figures: dict[str, float | int | dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"check {self.folder}: {'ok' if self.ok else f'{len(self.problems)} problems'}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  {k}: {v}" for k, v in self.figures.items()]
        return "\n".join(lines)


def check(folder: Path) -> CheckResult:
    result = CheckResult(folder)
    scripts = sorted(p.name for p in folder.glob("*.py"))
    if scripts:
        result.problems.append(f"Python files at the root break load_dataset: {scripts}")
    check_card(folder, result)
    result.figures.update(parquet_figures(folder))
    if result.figures.get("largest_row_group_mb", 0) > ROW_GROUP_LIMIT_MB:
        result.problems.append(f"a row group exceeds {ROW_GROUP_LIMIT_MB} MB")
    if result.figures.get("largest_image_kb", 0) > IMAGE_LIMIT_KB:
        result.problems.append(f"an image exceeds {IMAGE_LIMIT_KB} KB")
    if not result.problems:
        check_rows(folder, result)
    return result


def check_card(folder: Path, result: CheckResult) -> None:
    readme = folder / "README.md"
    if not readme.exists():
        result.problems.append("README.md is missing")
        return
    data = DatasetCard.load(readme).data
    configs = MetadataConfigs.from_dataset_card_data(data)
    infos = DatasetInfosDict.from_dataset_card_data(data)
    if sorted(configs) != sorted(CONFIG_NAMES) or sorted(infos) != sorted(CONFIG_NAMES):
        result.problems.append(f"card declares configs {sorted(configs)} and infos {sorted(infos)}")
    if not configs.get("mini", {}).get("default"):
        result.problems.append("mini is not the default configuration")
    for name, info in infos.items():
        if info.features != FEATURES:
            result.problems.append(f"card features of {name} differ from spinebench.FEATURES")


def parquet_figures(folder: Path) -> dict[str, float | int | dict]:
    largest_group = largest_image = 0
    sizes: dict[str, float] = {}
    for path in sorted(folder.glob("data/*/*.parquet")):
        parquet = pq.ParquetFile(path)
        for group in range(parquet.num_row_groups):  # one row group in memory at a time
            largest_group = max(largest_group, parquet.metadata.row_group(group).total_byte_size)
            for chunk in parquet.read_row_group(group, columns=["image"]).column("image").chunks:
                longest = pc.max(pc.binary_length(chunk.field("bytes"))).as_py()
                largest_image = max(largest_image, longest or 0)
        sizes[path.parent.name] = round(sizes.get(path.parent.name, 0) + path.stat().st_size / 2**20, 2)
    return {"size_mb": sizes, "largest_row_group_mb": round(largest_group / 2**20, 2),
            "largest_image_kb": round(largest_image / 1024, 1)}


@contextmanager
def _streaming_without_torch():
    """`datasets.IterableDataset()` imports torch (1.5 s, ~180 MB) only to share its epoch counter with
    DataLoader workers, whenever torch is installed; a check that iterates once in this process needs none."""
    if "torch" in sys.modules:  # already paid for: nothing to save
        yield
        return
    saved, datasets.config.TORCH_AVAILABLE = datasets.config.TORCH_AVAILABLE, False
    try:
        yield
    finally:
        datasets.config.TORCH_AVAILABLE = saved


def check_rows(folder: Path, result: CheckResult) -> None:
    """Load every configuration as a user would (streaming, no cache copy) and check its rows."""
    with _streaming_without_torch():
        _check_rows(folder, result)


def _check_rows(folder: Path, result: CheckResult) -> None:
    recorded = json.loads((folder / BUILD_INFO).read_text(encoding="utf-8"))["counts"]
    ids: dict[str, list[str]] = {}
    for name in CONFIG_NAMES:
        dataset = datasets.load_dataset(str(folder), name, split=SPLIT, streaming=True)
        if dataset.features != FEATURES:  # resolved from the card and files; nothing is read yet
            result.problems.append(f"{name}: loaded features differ from spinebench.FEATURES")
        rows = datasets.load_dataset(str(folder), name, split=SPLIT, streaming=True,
                                     columns=["id", "options", "answer"])  # never decodes an image
        ids[name] = []
        for row in rows:
            ids[name].append(row["id"])
            letters = set(LETTERS[: len(row["options"])])
            if len(row["options"]) != 5 or len(set(row["options"])) != 5:
                result.problems.append(f"{name}/{row['id']}: options {row['options']}")
            if not row["answer"] or not set(row["answer"]) <= letters:
                result.problems.append(f"{name}/{row['id']}: answer {row['answer']} not among the options")
        if len(set(ids[name])) != len(ids[name]):
            result.problems.append(f"{name}: duplicate ids")
        if len(ids[name]) != recorded[name]:
            result.problems.append(f"{name}: {len(ids[name])} rows, the build recorded {recorded[name]}")
    if sorted(ids["full"]) != sorted(ids["diagnosis"] + ids["localization"]):
        result.problems.append("full is not diagnosis + localization")
    if not set(ids["mini"]) <= set(ids["full"]):
        result.problems.append("mini has ids that full lacks")
    result.figures["rows"] = {name: len(v) for name, v in ids.items()}
