"""Figures for the dataset card, drawn from the build itself at export time (never by hand)."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

from build import artifacts  # noqa: E402
from spinebench import DISEASES, LETTERS, SOURCES, TASKS  # noqa: E402

PNG_METADATA = {"Software": None}  # keeps the files byte-identical across runs


def make_all(qa: list[dict], work: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        per_disease(qa, folder / "items_per_disease.png"),
        per_source(qa, folder / "items_per_source_and_modality.png"),
        gold_letters(qa, folder / "gold_letters.png"),
        examples(qa, work, folder / "examples.png"),
    ]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)
    plt.close(fig)
    return path


def per_disease(qa: list[dict], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, task in zip(axes, TASKS):
        counts = Counter(item["disease"] for item in qa if item["task"] == task)
        mini = Counter(item["disease"] for item in qa if item["task"] == task and item["mini"])
        ax.barh(DISEASES, [counts[d] for d in DISEASES], color="#9db4d0", label="full")
        ax.barh(DISEASES, [mini[d] for d in DISEASES], color="#2f5d8a", label="mini")
        ax.set_title(f"{task} items per disease")
        ax.set_xscale("symlog")
        ax.invert_yaxis()
    axes[0].legend()
    return _save(fig, path)


def per_source(qa: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for offset, task in enumerate(TASKS):
        counts = Counter(item["source"] for item in qa if item["task"] == task)
        positions = [i + offset * 0.4 for i in range(len(SOURCES))]
        ax.bar(positions, [counts[s] for s in SOURCES], width=0.4, label=task)
    modality = {item["source"]: item["modality"] for item in qa}
    ax.set_xticks([i + 0.2 for i in range(len(SOURCES))],
                  [f"{s}\n({modality.get(s, '-')})" for s in SOURCES])
    ax.set_ylabel("items")
    ax.legend()
    ax.set_title("items per source (modality)")
    return _save(fig, path)


def gold_letters(qa: list[dict], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, task in zip(axes, TASKS):
        counts = Counter(letter for item in qa if item["task"] == task for letter in item["answer"])
        total = sum(counts.values()) or 1
        ax.bar(LETTERS, [100 * counts[letter] / total for letter in LETTERS], color="#2f5d8a")
        ax.axhline(20, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{task}: gold letters (%)")
    return _save(fig, path)


def examples(qa: list[dict], work: Path, path: Path) -> Path:
    """One mini diagnosis item per disease, with its answer, from the standardized images."""
    picked: dict[str, dict] = {}
    for item in qa:
        if item["task"] == "diagnosis" and item["mini"] and item["disease"] not in picked:
            picked[item["disease"]] = item
    chosen = [picked[d] for d in DISEASES if d in picked]
    pixels = _thumbnails(work, chosen)
    columns = 4
    rows = max(1, -(-len(chosen) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, chosen):
        ax.imshow(pixels[item["image_id"]], cmap="gray", interpolation="nearest")
        ax.set_title(f"{item['disease']}\n{item['source']} {item['modality']} {item['view']}", fontsize=8)
    return _save(fig, path)


THUMBNAIL = 300  # pixels a side: what one 3-inch panel holds at the figures' 100 dpi


def _thumbnails(work: Path, items: list[dict]) -> dict[str, Image.Image]:
    """The items' images at panel size, reading each image shard once for all of its items.

    Shrunk here (Pillow's antialiasing filter) rather than by matplotlib, whose resampling of full-size
    images at draw time was most of the figure's cost.
    """
    wanted: dict[int, set[str]] = {}
    for item in items:
        wanted.setdefault(item["shard"], set()).add(item["image_id"])
    found: dict[str, Image.Image] = {}
    for shard, ids in sorted(wanted.items()):
        table = pq.read_table(work / artifacts.IMAGES_DIR / f"{artifacts.shard_name(shard)}.parquet",
                              columns=["image_id", "png"], filters=[("image_id", "in", sorted(ids))])
        for image_id, png in zip(table.column("image_id").to_pylist(), table.column("png").to_pylist()):
            image = Image.open(io.BytesIO(png)).convert("L")
            image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
            found[image_id] = image
    return found
