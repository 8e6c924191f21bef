"""A tiny Hub-style SpineBench folder for evaluation and folder-check tests, in the layout of the export.

Same layout and card YAML as the published dataset: per-config Parquet under data/<config>/, written by
datasets with spinebench.FEATURES; `full` reads the diagnosis and localization files, `mini` its own.
The gold letters vary (A included, Healthy at several positions, SLL sets of one to three levels) so
that the baselines' scores are informative.
"""

from __future__ import annotations

import io
from pathlib import Path

import datasets
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData
from PIL import Image

from spinebench import CONFIG_NAMES, FEATURES, HEALTHY, LETTERS, LEVELS, SPLIT

SDD = [  # (disease, options in letter order); the disease's option is the gold one
    (HEALTHY, [HEALTHY, "Osteophytes", "Spondylolisthesis", "Disc space narrowing", "Vertebral collapse"]),
    ("Osteophytes", ["Osteophytes", HEALTHY, "Vertebral collapse", "Foraminal stenosis",
                     "Spondylolisthesis"]),
    ("Spondylolisthesis", ["Osteophytes", "Disc space narrowing", "Spondylolisthesis", "Vertebral collapse",
                           HEALTHY]),
    ("Cervical kyphosis", [HEALTHY, "Cervical kyphosis", "Cervical lordosis", "Straight cervical vertebrae",
                           "Sigmoid cervical vertebrae"]),
    ("Spinal canal stenosis", ["Foraminal stenosis", "Subarticular stenosis", HEALTHY, "Disc space narrowing",
                               "Spinal canal stenosis"]),
    ("Vertebral collapse", ["Osteophytes", "Spondylolisthesis", HEALTHY, "Vertebral collapse",
                            "Disc space narrowing"]),
]
SLL = [  # (shift of the level order, annotated levels)
    (0, ["L1/L2"]),
    (2, ["L4/L5", "L5/S1"]),
    (4, ["L2/L3", "L3/L4", "L4/L5"]),
    (1, ["L1/L2", "L5/S1"]),
]
MINI = {"sdd-0", "sdd-2", "sdd-3", "sll-0", "sll-1"}


def _image(index: int) -> dict:
    """A small 8-bit grayscale PNG, stored as bytes so that the Parquet embeds it."""
    image = Image.new("L", (24, 16))
    image.putdata([(x * 10 + index * 40) % 256 for x in range(24 * 16)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _row(item_id: str, index: int, task: str, options: list[str], gold: list[str], disease: str,
         levels: list[str]) -> dict:
    letters = [LETTERS[options.index(text)] for text in gold]
    return {
        "id": item_id,
        "task": task,
        "image": _image(index),
        "image_id": f"img-{index}",
        "question": "Which spinal disease does this patient have?" if task == "diagnosis"
        else "At which levels of the spine is the lesion?",
        "options": options,
        "answer": sorted(letters),
        "answer_text": [options[LETTERS.index(letter)] for letter in sorted(letters)],
        "disease": disease,
        "levels": levels,
        "source": "rsna" if task == "localization" else "vindr",
        "modality": "MRI" if task == "localization" else "X-ray",
        "region": "lumbar",
        "view": "Sagittal T2/STIR" if task == "localization" else "lateral",
        "patient_id": f"patient-{index % 3}",
        "severity": "Moderate" if task == "localization" else None,
        "question_id": f"{task}-q0",
    }


def fixture_rows() -> dict[str, list[dict]]:
    """Rows of the diagnosis and localization files."""
    diagnosis = [
        _row(f"sdd-{i}", i, "diagnosis", options, [disease], disease, [])
        for i, (disease, options) in enumerate(SDD)
    ]
    localization = [
        _row(f"sll-{i}", 10 + i, "localization", list(LEVELS[shift:] + LEVELS[:shift]), levels,
             "Spinal canal stenosis", levels)
        for i, (shift, levels) in enumerate(SLL)
    ]
    return {"diagnosis": diagnosis, "localization": localization}


def write_hub_folder(root: Path, rows: dict[str, list[dict]] | None = None, default: str = "full",
                     full: tuple[str, ...] = ("diagnosis", "localization")) -> Path:
    """Write the folder (Parquet per config and README.md with the configs' YAML) and return it.

    `rows` (per data folder, as `fixture_rows` gives them; mini derived when absent), the default
    configuration and the folders `full` reads can be changed to make a folder the check must refuse.
    """
    rows = dict(rows or fixture_rows())
    if "mini" not in rows:
        rows["mini"] = [row for task_rows in rows.values() for row in task_rows if row["id"] in MINI]
    for config, config_rows in rows.items():
        folder = root / "data" / config
        folder.mkdir(parents=True, exist_ok=True)
        complete = [{column: row.get(column) for column in FEATURES} for row in config_rows]  # others: null
        datasets.Dataset.from_list(complete, features=FEATURES).to_parquet(
            folder / f"{SPLIT}-00000-of-00001.parquet"
        )

    def files(*configs: str) -> list[dict]:
        return [{"split": SPLIT, "path": [f"data/{config}/{SPLIT}-*.parquet" for config in configs]}]

    card = DatasetCardData(pretty_name="SpineBench test fixture", license="other")
    configs = {
        "full": {"data_files": files(*full)},
        "diagnosis": {"data_files": files("diagnosis")},
        "localization": {"data_files": files("localization")},
        "mini": {"data_files": files("mini")},
    }
    configs[default]["default"] = True
    MetadataConfigs(configs).to_dataset_card_data(card)
    DatasetInfosDict(
        {config: datasets.DatasetInfo(features=FEATURES) for config in CONFIG_NAMES}
    ).to_dataset_card_data(card)
    readme = f"---\n{card.to_yaml()}\n---\n\n# SpineBench test fixture\n"
    (root / "README.md").write_text(readme, encoding="utf-8")
    return root
