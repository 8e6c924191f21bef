"""Item images in a lighteval run: models get the same RGB pixels, the details get none, the scores stay.

The reference is the run before this plumbing existed, rebuilt here by hand: rows decoded by the datasets
library and converted to RGB (`image.convert("RGB")`), kept in every Doc and in its details.
"""

from __future__ import annotations

import io

import datasets
import pyarrow.parquet as pq
from PIL import Image

from evaluation import images as item_images
from test_lighteval_tasks import hub, run, task_module  # noqa: F401 - hub is a fixture

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_models_read_the_rgb_image_of_the_row(hub):
    module = task_module()
    encoded = datasets.load_dataset(str(hub), "mini", split="test").cast_column(
        "image", datasets.Image(decode=False))
    decoded = datasets.load_dataset(str(hub), "mini", split="test")
    for line, row in zip(encoded.select(range(4)), decoded.select(range(4))):
        doc = module.prompt_image(line, "spinebench:mini")
        assert isinstance(doc.images, item_images.EncodedImages) and len(doc.images) == 1
        expected = row["image"].convert("RGB")
        for seen in (doc.images[0], next(iter(doc.images)), list(doc.images)[0], doc.images[:1][0]):
            assert seen.mode == "RGB" and seen.size == expected.size and seen.tobytes() == expected.tobytes()
        assert doc.images.count(line["image"]["bytes"]) == 1  # what the Doc holds: the PNG bytes only
        assert module.prompt_image(row, "spinebench:mini").images[0].tobytes() == expected.tobytes()


def test_details_hold_item_ids_and_no_image_bytes(hub, tmp_path):
    pipeline = run(hub, "oracle", tmp_path, tasks=("mini", "mini_circular"))
    pipeline.save_and_push_results()
    files = sorted((tmp_path / "details").rglob("details_*.parquet"))
    assert len(files) == 2
    for path in files:
        assert PNG_SIGNATURE not in path.read_bytes()
        table = pq.read_table(path)
        images = table.column("doc").combine_chunks().field("images").to_pylist()
        ids = [specific["id"] for specific in table.column("doc").combine_chunks().field("specific").to_pylist()]
        assert images == [[item_id] for item_id in ids]


def _decode(value) -> Image.Image:
    return value if isinstance(value, Image.Image) else Image.open(io.BytesIO(value["bytes"]))


def test_scores_are_those_of_the_eager_images(hub, tmp_path, monkeypatch):
    from lighteval.logging.info_loggers import DetailsLogger

    tasks = ("mini", "mini_circular", "mini_text")
    encoded = run(hub, "random", tmp_path / "encoded", tasks=tasks).get_results()["results"]

    # the behaviour before: RGB images decoded up front, kept in the Docs and in their details
    monkeypatch.setattr(item_images, "install", lambda ours: None)
    monkeypatch.setattr(item_images, "doc_images", lambda value: [_decode(value).convert("RGB")])
    monkeypatch.setattr(DetailsLogger, "log", DetailsLogger.log.__wrapped__)
    eager = run(hub, "random", tmp_path / "eager", tasks=tasks)
    assert all(isinstance(d.doc.images[0], Image.Image) for d in eager.get_details()["spinebench:mini|0"])
    assert eager.get_results()["results"] == encoded
