"""Export the Hub folder: per-configuration Parquet with embedded images, the card, figures, build info.

    python -m build export --work WORK --out OUT [--public]

Writes OUT/spinebench/ (never containing spinebench.py, which would break `load_dataset` on it):
  data/diagnosis/test-*.parquet, data/localization/test-*.parquet, data/mini/test-*.parquet
  README.md           dataset_card.md rendered, with YAML front matter (configs, dataset_info, licence, ...)
  figures/*.png       made from this build
  spinebench_build.json   profile, imaging settings and counts (the builder needs them to rehydrate)
`full` stores nothing of its own: its data_files are the diagnosis and localization globs. The folder is
built beside the target and swapped in whole, then checked by loading every configuration.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from build import artifacts, card, config, figures, hubcheck
from build.errors import BuildError
from build.items import ITEMS_SETTINGS
from spinebench import BUILD_INFO, CONFIG_NAMES, QA, SPLIT, SpineBench

COMMAND = "export"
HELP = "materialise the four configurations into a Hub folder (Parquet, card, figures) and check it"
STORED = ("diagnosis", "localization", "mini")  # configurations with files of their own
MAX_SHARD = "400MB"
STAGING_PREFIX = ".spinebench."
CARD_COLUMNS = ["task", "image_id", "question", "options", "answer", "disease", "present", "source", "modality",
                "region", "view", "shard", "mini", "review"]  # what the card and the figures read of qa.parquet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", type=Path, required=True, help="work folder with qa.parquet and image shards")
    parser.add_argument("--out", type=Path, required=True, help="the Hub folder is written to OUT/spinebench")
    parser.add_argument("--public", action="store_true",
                        help="leave out pixels of sources whose redistribution policy is `pointer`")


def main(args: argparse.Namespace) -> int:
    folder = export(args.work, args.out, args.public)
    result = hubcheck.check(folder)
    print(result.summary())
    return 0 if result.ok else 1


def hub_folder(out: Path) -> Path:
    return out / "spinebench"


def export(work: Path, out: Path, public: bool = False) -> Path:
    """Build OUT/spinebench in a staging folder beside it and swap it in whole when complete."""
    check_settings(work)
    with artifacts.locked(out), artifacts.locked(work):
        target, previous = hub_folder(out), out / f"{STAGING_PREFIX}previous"
        if previous.exists() and not target.exists():  # killed between the two renames below
            previous.rename(target)
        for leftover in out.glob(f"{STAGING_PREFIX}*"):  # from a killed export: never half of a folder
            shutil.rmtree(leftover)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
        try:
            write_folder(work, staging, public)
            os.chmod(staging, artifacts.DIR_MODE)  # mkdtemp's folder is private (0700); the export is not
            if target.exists():
                target.rename(previous)
            staging.rename(target)
            if previous.exists():
                shutil.rmtree(previous)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return target


def check_settings(work: Path) -> None:
    """What the export needs, checked before it writes anything."""
    config.load_all()
    for name in (artifacts.PROFILE, QA, ITEMS_SETTINGS):
        if not (work / name).is_file():
            raise BuildError(f"{work / name} not found: run `python -m build ingest` and `items` first")
    config.profile(artifacts.read_json(work / artifacts.PROFILE)["profile"])


def write_folder(work: Path, staging: Path, public: bool) -> None:
    profile = config.profile(artifacts.read_json(work / artifacts.PROFILE)["profile"])
    infos = write_configs(work, staging, public)
    everything = pq.read_table(work / QA, columns=CARD_COLUMNS).to_pylist()
    qa = [item for item in everything if item["review"] != "reject"]
    build_info = {
        "profile": profile["name"],
        "seed": profile["seed"],
        "imaging": profile["imaging"],
        "public": public,
        "pointer_sources": sorted(name for name, s in config.load("sources").items()
                                  if public and s["redistribution"] == "pointer"),
        "counts": {name: info.splits[SPLIT].num_examples for name, info in infos.items()},
        "items": artifacts.read_json(work / ITEMS_SETTINGS),
        "rejected_by_review": len(everything) - len(qa),
        "sources": artifacts.read_json(work / artifacts.SOURCES) if (work / artifacts.SOURCES).exists() else {},
    }
    artifacts.write_json(staging / BUILD_INFO, build_info)
    figure_paths = figures.make_all(qa, work, staging / "figures")
    (staging / "LICENSE.md").write_text(card.licence_text(build_info), encoding="utf-8")
    (staging / "README.md").write_text(readme(infos, qa, build_info, figure_paths, staging), encoding="utf-8")


def write_configs(work: Path, folder: Path, public: bool) -> dict[str, datasets.DatasetInfo]:
    """Materialise the stored configurations with the builder; `full` gets its info from the other two."""
    infos: dict[str, datasets.DatasetInfo] = {}
    # beside the staging folder, not in /tmp: a killed export's scratch is then removed by the next one
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}scratch.", dir=folder.parent) as scratch:
        for name in STORED:
            builder = SpineBench(config_name=name, data_dir=str(work), public=public,
                                 cache_dir=str(Path(scratch) / "cache"))
            prepared = Path(scratch) / name
            builder.download_and_prepare(output_dir=str(prepared), file_format="parquet",
                                         max_shard_size=MAX_SHARD)
            files = sorted(prepared.glob("*.parquet"))
            for index, path in enumerate(files):
                destination = folder / "data" / name / f"{SPLIT}-{index:05d}-of-{len(files):05d}.parquet"
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, destination)
            infos[name] = builder.info
    full = datasets.DatasetInfo(features=infos["diagnosis"].features)
    full.splits = datasets.SplitDict({SPLIT: datasets.SplitInfo(
        name=SPLIT, num_examples=sum(infos[n].splits[SPLIT].num_examples for n in ("diagnosis", "localization")),
        num_bytes=sum(infos[n].splits[SPLIT].num_bytes for n in ("diagnosis", "localization")))})
    return {"full": full, **infos}


def data_files(name: str) -> list[str]:
    parts = ("diagnosis", "localization") if name == "full" else (name,)
    return [f"data/{part}/{SPLIT}-*.parquet" for part in parts]


def card_data(infos: dict[str, datasets.DatasetInfo], build_info: dict[str, Any]) -> DatasetCardData:
    """The README front matter, written by the datasets library's own serialisers."""
    data = DatasetCardData(
        pretty_name="SpineBench",
        license="other",
        license_name="spinebench-mixed-source-terms",
        license_link="LICENSE.md",
        language=["en"],
        task_categories=["visual-question-answering", "multiple-choice"],
        tags=["medical", "radiology", "spine", "x-ray", "mri", "benchmark", "vqa"],
        size_categories=[size_category(build_info["counts"]["full"])],
        source_datasets=["BUU-LSPINE", "CSXA", "RSNA-2024-lumbar-spine", "VinDr-SpineXR"],
    )
    MetadataConfigs({
        name: {"data_files": [{"split": SPLIT, "path": data_files(name)}], **({"default": True} if name == "mini" else {})}
        for name in CONFIG_NAMES
    }).to_dataset_card_data(data)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < bound:
            return label
    return "100K<n<1M"


def readme(infos: dict[str, datasets.DatasetInfo], qa: list[dict], build_info: dict[str, Any],
           figure_paths: list[Path], folder: Path) -> str:
    front = card_data(infos, build_info).to_yaml()
    body = card.render(qa, build_info, [p.relative_to(folder).as_posix() for p in figure_paths])
    return f"---\n{front}\n---\n\n{body}"
