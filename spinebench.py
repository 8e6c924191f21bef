"""SpineBench: the dataset's one definition.

The public schema (column names and feature types), the label vocabulary it carries, and the four
configurations. Every build stage and the evaluation import these names from here; nothing else defines
a column. The `datasets` builder that yields the configurations from a build lives here too (added with
the publishing stage).

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
    }
)
COLUMNS: tuple[str, ...] = tuple(FEATURES)
