"""How item images travel through a lighteval run: encoded until a model looks, never into the details.

lighteval makes every Doc of a task before the model runs and keeps them, with their details, to the end. A
Doc holding a decoded RGB image costs ~0.6 MB at the benchmark's 512-pixel size (a real-size mini of 2,758
items: ~1.7 GB), and lighteval 0.13's `EvaluationTracker.save` then turns every detail's image back into
PNG (through `asdict` and `Dataset.from_list`) even without `--save-details`: most of a baseline run's time.
So the loader hands the prompt functions the stored PNG bytes, a Doc's `images` decodes a fresh RGB image
each time a model reads it, and the logged details carry the item id in place of the pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Callable, Iterator
from typing import Any

import datasets
from datasets import DatasetDict
from lighteval.logging.info_loggers import DetailsLogger
from lighteval.tasks.lighteval_task import LightevalTask
from lighteval.tasks.requests import Doc
from PIL import Image

IMAGE_COLUMN = "image"


class EncodedImages(list):
    """`Doc.images` holding encoded images (PNG bytes or a file path): reading an item decodes it to RGB.

    Models read `doc.images` by iterating or indexing (lighteval's prompt manager and VLM collator, the
    endpoint model), and get exactly what an eagerly decoded `image.convert("RGB")` gave them; nothing
    decoded is kept, so a Doc costs its compressed bytes.
    """

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_rgb(source) for source in super().__getitem__(index)]
        return _rgb(super().__getitem__(index))

    def __iter__(self) -> Iterator[Image.Image]:
        return (_rgb(source) for source in super().__iter__())

    def __repr__(self) -> str:
        return f"EncodedImages({len(self)} images)"


def _rgb(source: bytes | str) -> Image.Image:
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return image.convert("RGB")


def doc_images(value: Any) -> list:
    """A row's image as `Doc.images`: encoded ({"bytes", "path"}, as the loader below gives it) stays encoded;
    an image already decoded by the caller (a row read with the default features) is converted as it is."""
    if isinstance(value, Image.Image):
        return [value.convert("RGB")]
    return EncodedImages([value["bytes"] if value.get("bytes") is not None else value["path"]])


# lighteval 0.13 offers no hook for either step below, hence wrappers around its loader and its details
# logger; each is installed once and is inert for every task but ours (`ours(name)`: a task name, with or
# without its "|shots" suffix).


def encoded_image_loader(download: Callable[[LightevalTask], DatasetDict], ours: Callable[[str], bool]):
    """Wrap lighteval's dataset loader: our tasks' image column arrives undecoded (bytes and path)."""

    @functools.wraps(download)  # keeps the marks of wrappers installed before this one
    def download_dataset_worker(task: LightevalTask) -> DatasetDict:
        dataset = download(task)
        if not ours(task.name):
            return dataset
        return DatasetDict({split: rows.cast_column(IMAGE_COLUMN, datasets.Image(decode=False))
                            if IMAGE_COLUMN in rows.column_names else rows for split, rows in dataset.items()})

    download_dataset_worker.spinebench_encoded_images = True
    return staticmethod(download_dataset_worker)


def pixel_free_details(log: Callable[..., None], ours: Callable[[str], bool]):
    """Wrap `DetailsLogger.log`: our details keep one item id per image instead of the image itself."""

    @functools.wraps(log)
    def log_detail(self: DetailsLogger, task_name: str, doc: Doc, model_response: Any, metrics: dict) -> None:
        if ours(doc.task_name) and doc.images:
            doc = dataclasses.replace(doc, images=[doc.specific["id"]] * len(doc.images))
        log(self, task_name, doc, model_response, metrics)

    log_detail.spinebench_pixel_free = True
    return log_detail


def install(ours: Callable[[str], bool]) -> None:
    """Install both wrappers (once per process, however often the task file is loaded)."""
    if not getattr(LightevalTask.download_dataset_worker, "spinebench_encoded_images", False):
        LightevalTask.download_dataset_worker = encoded_image_loader(LightevalTask.download_dataset_worker, ours)
    if not getattr(DetailsLogger.log, "spinebench_pixel_free", False):
        DetailsLogger.log = pixel_free_details(DetailsLogger.log, ours)
