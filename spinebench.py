"""SpineBench: the dataset's one definition.

The public schema (column names and feature types), the label vocabulary it carries, and the four
configurations. Every build stage and the evaluation import these names from here; nothing else defines
a column. The `datasets` builder that yields the configurations from a build lives here too.

This file is never published inside the Hub folder: datasets 5.2 refuses a repo that holds a script of
the repo's own name.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import yaml

ROOT = Path(__file__).resolve().parent
CONFIGS_DIR = ROOT / "configs"

TASKS = ("diagnosis", "localization")
SOURCES = ("buu", "csxa", "rsna", "vindr")
MODALITIES = ("X-ray", "MRI")
LEVELS = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
LETTERS = ("A", "B", "C", "D", "E")
HEALTHY = "Healthy"
SPLIT = "test"
CONFIG_NAMES = ("full", "diagnosis", "localization", "mini")


def _load_diseases() -> tuple[str, ...]:
    with open(CONFIGS_DIR / "labels.yaml", encoding="utf-8") as handle:
        return tuple(entry["name"] for entry in yaml.safe_load(handle)["diseases"])


DISEASES: tuple[str, ...] = _load_diseases()

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "image": datasets.Image(mode="RGB"),
        "image_id": datasets.Value("string"),
        "question": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")),
        "answer": datasets.List(datasets.Value("string")),
        "answer_text": datasets.List(datasets.Value("string")),
        "disease": datasets.ClassLabel(names=list(DISEASES)),
        "levels": datasets.List(datasets.Value("string")),
        "source": datasets.Value("string"),
        "modality": datasets.Value("string"),
        "region": datasets.Value("string"),
        "view": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "severity": datasets.Value("string"),
        "question_id": datasets.Value("string"),
        "image_sha256": datasets.Value("string"),  # sha256 of the standardized pixels (see build/imaging.py)
        "image_path": datasets.Value("string"),  # <source>/<path inside the release root>, any download layout
        "image_frame": datasets.Value("int32"),
    }
)
COLUMNS: tuple[str, ...] = tuple(FEATURES)

_DESCRIPTION = (
    "SpineBench: multiple-choice visual questions on spine X-rays and MRI (disease diagnosis and lesion "
    "localization), built from BUU-LSPINE, CSXA, RSNA 2024 lumbar MRI and VinDr-SpineXR."
)
_CITATION = """@inproceedings{zhang2025spinebench,
  title     = {SpineBench: Benchmarking Multimodal LLMs for Spinal Pathology Analysis},
  author    = {Zhang, Chenghanyu and others},
  booktitle = {Proceedings of the 33rd ACM International Conference on Multimedia (MM '25)},
  year      = {2025},
  note      = {arXiv:2510.12267}
}"""
BUILD_INFO = "spinebench_build.json"  # in a published folder: profile and imaging settings of the build
QA = "qa.parquet"


class SpineBenchConfig(datasets.BuilderConfig):
    """One configuration: which tasks, whether only the mini subset, and where the pixels come from.

    `public`: leave out the pixels of sources whose policy is `pointer` (configs/sources.yaml).
    `published`: a published SpineBench folder; with it, `data_dir` is a raw download (buu/ csxa/ rsna/
    vindr/) from which pointer rows get their pixels back.
    """

    def __init__(self, *args, tasks: tuple[str, ...] = TASKS, mini: bool = False, public: bool = False,
                 published: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = tasks
        self.mini = mini
        self.public = public
        self.published = published


class SpineBench(datasets.GeneratorBasedBuilder):
    """The four SpineBench configurations, from a local build or a published folder plus a raw download.

    From a build's work folder (qa.parquet + image shards), directly instantiated, as the export does::

        from spinebench import SpineBench
        builder = SpineBench(config_name="mini", data_dir="out/demo/work")
        builder.download_and_prepare(output_dir="/tmp/sb", file_format="parquet")
        mini = builder.as_dataset(split="test")

    Rehydrating a public export, whose VinDr and RSNA rows carry only `image_path`, from your own download::

        builder = SpineBench(config_name="full", data_dir="/data/raw", published="/data/spinebench")

    Users of the Hub dataset need none of this: `load_dataset("<org>/spinebench", "mini")` reads Parquet.
    """

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = SpineBenchConfig
    BUILDER_CONFIGS = [
        SpineBenchConfig(name="full", description="every item of both tasks"),
        SpineBenchConfig(name="diagnosis", tasks=("diagnosis",), description="disease diagnosis (SDD) items"),
        SpineBenchConfig(name="localization", tasks=("localization",), description="lesion localization (SLL)"),
        SpineBenchConfig(name="mini", mini=True, description="the balanced subset: 1,758 SDD + 1,000 SLL"),
    ]
    DEFAULT_CONFIG_NAME = "mini"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=_DESCRIPTION, features=FEATURES, citation=_CITATION,
                                    homepage="https://arxiv.org/abs/2510.12267")

    def _split_generators(self, dl_manager):
        if not self.config.data_dir:
            raise ValueError("data_dir is required: a build's work folder, or a raw download with `published`")
        return [datasets.SplitGenerator(name=SPLIT, gen_kwargs={"folder": Path(self.config.data_dir)})]

    def _generate_examples(self, folder: Path):
        rows = _published_rows(self.config) if self.config.published else _work_rows(self.config, folder)
        releases: dict[str, object] = {}  # source -> its release in the user's download, found once
        for row in rows:
            if row["image"] is None and self.config.published:
                row["image"] = {"bytes": _rehydrate(folder, Path(self.config.published), row, releases),
                                "path": None}
            yield row["id"], {name: row[name] for name in FEATURES}


def _work_rows(config: SpineBenchConfig, work: Path):
    """Rows of a build's work folder in qa.parquet order, pixels read one shard at a time."""
    import pyarrow.parquet as pq

    pointer = _pointer_sources() if config.public else set()
    batches = pq.ParquetFile(work / QA).iter_batches(batch_size=1024)  # a batch of items in memory, not all
    shard, pixels = None, {}
    for item in (item for batch in batches for item in batch.to_pylist()):
        if item["task"] not in config.tasks or item["review"] == "reject" or (config.mini and not item["mini"]):
            continue
        if item["source"] in pointer:
            yield {**item, "image": None}
            continue
        if item["shard"] != shard:
            shard = item["shard"]
            table = pq.read_table(work / "images" / f"images-{shard:05d}.parquet", columns=["image_id", "png"])
            pixels = dict(zip(table.column("image_id").to_pylist(), table.column("png").to_pylist()))
        yield {**item, "image": {"bytes": pixels[item["image_id"]], "path": None}}


def _published_rows(config: SpineBenchConfig):
    """Rows of a published folder's Parquet files for this configuration, in file order."""
    import pyarrow.parquet as pq

    folder = Path(config.published)
    parts = config.tasks if not config.mini else ("mini",)
    for part in parts:
        for path in sorted((folder / "data" / part).glob("*.parquet")):
            yield from pq.read_table(path).to_pylist()


def _pointer_sources() -> set[str]:
    with open(CONFIGS_DIR / "sources.yaml", encoding="utf-8") as handle:
        return {name for name, entry in yaml.safe_load(handle).items() if entry["redistribution"] != "embed"}  # fail closed


def _rehydrate(raw: Path, published: Path, row: dict, releases: dict) -> bytes:
    """Standardize the row's raw file exactly as the build did and check it is the same image.

    `image_path` is `<source>/<path inside the release root>`: the root is found by its signature in
    raw/<source> (any depth, unzipped or still zipped), so any layout of the same release rebuilds the row.
    """
    import json

    from build.imaging import standardize_file
    from build.sources import find

    source, inside = row["image_path"].split("/", 1)
    if source not in releases:
        releases[source] = find(source, raw / source)
    release = releases[source]
    imaging = json.loads((published / BUILD_INFO).read_text(encoding="utf-8"))["imaging"]
    image = standardize_file(release.pixels(inside), frame=row["image_frame"], max_side=imaging["max_side"],
                             percentile_window=tuple(imaging["percentile_window"]))
    if image.sha256 != row["image_sha256"]:
        raise ValueError(f"{raw / source / release.shown(inside)}: pixels differ from the published image "
                         f"(sha256 {image.sha256[:12]} != {row['image_sha256'][:12]}); another release version?")
    return image.png
