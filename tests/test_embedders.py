"""Distractor-stage embedders: the weight-free fallback, SigLIP2 through real transformers, the cache."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: these tests never download

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw
from tiny_models import build_tiny_siglip2, build_tiny_siglip2_fixres

from build import embedders
from build.embedders import (
    EmbeddingCache,
    FallbackEmbedder,
    Siglip2Embedder,
    default_batch_size,
    embed_with_cache,
    embedding_progress,
    make_embedder,
)

SHAPES = ("vertical bar", "diagonal bar", "circle")


def shape_image(kind: str, shift: int = 0, noise: float = 0.0, seed: int = 0) -> Image.Image:
    """A bright shape on a dark 256x256 background, optionally shifted and with Gaussian noise."""
    image = Image.new("L", (256, 256), 20)
    draw = ImageDraw.Draw(image)
    if kind == "vertical bar":
        draw.rectangle([118 + shift, 40, 138 + shift, 216], fill=220)
    elif kind == "diagonal bar":
        draw.line([(60 + shift, 216), (196 + shift, 40)], fill=220, width=20)
    else:
        draw.ellipse([68 + shift, 68, 188 + shift, 188], outline=220, width=20)
    pixels = np.asarray(image, dtype=np.float64) + np.random.default_rng(seed).normal(0, noise, (256, 256))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


def mixed_images() -> list[Image.Image]:
    """Different sizes, aspect ratios and modes, as real shards hold."""
    rng = np.random.default_rng(7)
    return [
        shape_image("circle", noise=10),
        Image.fromarray(rng.integers(0, 256, (200, 120), dtype=np.uint8), "L"),
        Image.fromarray(rng.integers(0, 256, (90, 300, 3), dtype=np.uint8), "RGB"),
        Image.new("L", (20, 20), 128),  # blank and tiny
    ]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class CountingEmbedder:
    """Wraps an embedder and records the size of every batch it is asked to embed."""

    def __init__(self, inner: embedders.Embedder) -> None:
        self.inner = inner
        self.name, self.dim, self.batch_size = inner.name, inner.dim, inner.batch_size
        self.batches: list[int] = []

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.batches.append(len(images))
        return self.inner.embed(images)


def assert_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.dtype == np.float32 and vectors.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- fallback


def test_fallback_rows_are_unit_float32():
    vectors = FallbackEmbedder().embed(mixed_images())
    assert_unit_rows(vectors, 4, FallbackEmbedder.dim)
    assert np.isfinite(vectors).all()


def test_fallback_is_bit_identical_and_batch_independent():
    images = mixed_images()
    first = FallbackEmbedder().embed(images)
    assert first.tobytes() == FallbackEmbedder().embed(images).tobytes()
    one_by_one = np.vstack([FallbackEmbedder().embed([image]) for image in images])
    assert one_by_one.tobytes() == first.tobytes()


def test_fallback_v1_output_is_pinned():
    """Caches are keyed by 'fallback-v1': if this digest moves, the features changed, so bump the name."""
    noise = np.random.default_rng(3).integers(0, 256, (256, 256), dtype=np.uint8)  # integer draws: exact
    images = [shape_image(kind) for kind in SHAPES] + [Image.fromarray(noise, "L")]
    digest = hashlib.sha256(FallbackEmbedder().embed(images).tobytes()).hexdigest()
    assert FallbackEmbedder.name == "fallback-v1"
    assert digest == "67ca52ee9266e1f09835513c1e394c4be349fd611f4170dbda512b15f05cd0a2"


def test_fallback_similar_shapes_are_closer_than_other_shapes():
    embedder = FallbackEmbedder()
    clean = embedder.embed([shape_image(kind) for kind in SHAPES])
    variant = embedder.embed([shape_image(kind, shift=6, noise=15, seed=1) for kind in SHAPES])
    similarity = variant @ clean.T  # rows: shifted noisy variant; columns: clean shapes
    for i, kind in enumerate(SHAPES):
        others = np.delete(similarity[i], i)
        assert similarity[i, i] > others.max() + 0.3, (kind, similarity[i])


# ---------------------------------------------------------------------------------------------- SigLIP2


TINY_BUILDERS = {"naflex": build_tiny_siglip2, "fixres": build_tiny_siglip2_fixres}  # the two Hub layouts


@pytest.fixture(scope="module", params=list(TINY_BUILDERS))
def tiny_siglip(request, tmp_path_factory) -> Path:
    return TINY_BUILDERS[request.param](tmp_path_factory.mktemp("models") / request.param)


def test_tiny_siglip_folder_loads_offline(tiny_siglip):
    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_siglip)
    assert processor(text=["a lumbar spine"], return_tensors="pt")["input_ids"].shape[0] == 1
    assert AutoModel.from_pretrained(tiny_siglip).config.vision_config.hidden_size == 32


@pytest.mark.parametrize("layout", list(TINY_BUILDERS))
def test_tiny_siglip_builds_are_seeded(layout, tmp_path):
    weights = [(TINY_BUILDERS[layout](tmp_path / name) / "model.safetensors").read_bytes() for name in "ab"]
    assert weights[0] == weights[1]


def test_siglip2_vectors_do_not_depend_on_batch_size(tiny_siglip):
    images = mixed_images()
    singles = Siglip2Embedder(str(tiny_siglip), batch_size=1).embed(images)
    triples = Siglip2Embedder(str(tiny_siglip), batch_size=3).embed(images)
    assert_unit_rows(singles, 4, 32)
    np.testing.assert_allclose(singles, triples, atol=1e-5)
    assert not np.allclose(singles[0], singles[1], atol=1e-3)  # distinct images, distinct vectors


def test_make_embedder_dispatches(tiny_siglip):
    assert isinstance(make_embedder("fallback"), FallbackEmbedder)
    siglip = make_embedder(str(tiny_siglip), batch_size=2)
    assert isinstance(siglip, Siglip2Embedder) and siglip.batch_size == 2
    assert siglip.name == f"siglip2:{tiny_siglip.name}" and siglip.dim == 32


# ---------------------------------------------------------------------------------------------- cache


def items(images: Sequence[Image.Image]) -> list[tuple[str, embedders.ImageSource]]:
    """(sha, source) pairs alternating PNG bytes and loaders, the two kinds a stage may hand over."""
    pairs = []
    for i, image in enumerate(images):
        data = png(image)
        source = data if i % 2 else (lambda data=data: Image.open(io.BytesIO(data)))
        pairs.append((hashlib.sha256(data).hexdigest(), source))
    return pairs


def test_rerun_embeds_nothing_and_returns_identical_vectors(tmp_path):
    pairs = items([shape_image(kind, shift=s) for kind in SHAPES for s in (0, 3, 9)])
    path = tmp_path / "embeddings.parquet"
    first_embedder = CountingEmbedder(FallbackEmbedder())
    cache = EmbeddingCache(path, first_embedder.name)
    rows = {sha: [row] for row, (sha, _) in enumerate(pairs)}
    rows[pairs[0][0]].append(len(pairs))  # one image twice in the item list: its vector at both rows
    first = embed_with_cache(first_embedder, cache, iter(pairs + pairs[:2]), rows, batch_size=4)  # 2 duplicates
    assert first_embedder.batches == [4, 4, 1]  # every image once, never more than a batch at a time
    assert first.shape == (len(pairs) + 1, FallbackEmbedder.dim) and (first[-1] == first[0]).all()
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    cache.save()

    for reopened in (cache, EmbeddingCache(path, first_embedder.name)):
        again = CountingEmbedder(FallbackEmbedder())
        second = embed_with_cache(again, reopened, iter(pairs), rows, batch_size=4)
        assert again.batches == []
        assert second.tobytes() == first.tobytes()


def test_only_misses_are_embedded(tmp_path):
    pairs = items([shape_image(kind, noise=5, seed=s) for kind in SHAPES for s in range(2)])
    cache = EmbeddingCache(tmp_path / "e.parquet", FallbackEmbedder.name)
    rows = {sha: [row] for row, (sha, _) in enumerate(pairs)}
    embed_with_cache(FallbackEmbedder(), cache, pairs[:4], {sha: rows[sha] for sha, _ in pairs[:4]}, batch_size=8)
    counting = CountingEmbedder(FallbackEmbedder())
    vectors = embed_with_cache(counting, cache, pairs, rows, batch_size=8)
    assert counting.batches == [2] and len(vectors) == 6
    fresh = embed_with_cache(FallbackEmbedder(), EmbeddingCache(tmp_path / "f.parquet", FallbackEmbedder.name),
                             pairs, rows)
    assert vectors.tobytes() == fresh.tobytes()  # cached rows are the vectors the embedder gives


def test_progress_counts_cached_and_embedded_images_once(tmp_path):
    pairs = items([shape_image(kind, shift=s) for kind in SHAPES for s in (0, 5)])
    rows = {sha: [row] for row, (sha, _) in enumerate(pairs)}
    cache = EmbeddingCache(tmp_path / "e.parquet", FallbackEmbedder.name)
    embed_with_cache(FallbackEmbedder(), cache, pairs[:2], {sha: rows[sha] for sha, _ in pairs[:2]})  # no bar
    counting = CountingEmbedder(FallbackEmbedder())
    with embedding_progress(total=2 * len(pairs)) as bar:
        embed_with_cache(counting, cache, pairs + pairs[:1], rows, batch_size=3)  # 2 cached, 4 new, 1 repeat
        assert bar.n == len(pairs) and counting.batches == [3, 1]
        embed_with_cache(counting, cache, pairs, rows)  # a second shard's worth, all cached now
        assert bar.n == 2 * len(pairs)
    assert embedders._progress == []


def test_batch_size_follows_the_device(tiny_siglip, tmp_path):
    assert [default_batch_size(d) for d in ("cpu", "cuda", "cuda:1", "mps")] == [32, 256, 256, 32]
    assert make_embedder(str(tiny_siglip)).batch_size == 32
    assert make_embedder(str(tiny_siglip), batch_size=5).batch_size == 5
    counting = CountingEmbedder(FallbackEmbedder())
    pairs = items([shape_image(SHAPES[0], shift=s) for s in range(40)])
    cache = EmbeddingCache(tmp_path / "e.parquet", FallbackEmbedder.name)
    embed_with_cache(counting, cache, pairs, {sha: [row] for row, (sha, _) in enumerate(pairs)})
    assert counting.batches == [32, 8]  # no batch asked for: the embedder's own


def test_an_image_without_pixels_is_an_error(tmp_path):
    pairs = items([shape_image(kind) for kind in SHAPES[:2]])
    cache = EmbeddingCache(tmp_path / "e.parquet", FallbackEmbedder.name)
    with pytest.raises(ValueError, match="no pixels for 1 of 3 images"):
        embed_with_cache(FallbackEmbedder(), cache, pairs, {**{sha: [i] for i, (sha, _) in enumerate(pairs)},
                                                           "f" * 64: [2]})


def test_cache_roundtrip_and_file_layout(tmp_path):
    rng = np.random.default_rng(0)
    shas = [f"{i:064x}" for i in range(5)]
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    paths = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path, order in zip(paths, (range(5), reversed(range(5)))):
        cache = EmbeddingCache(path, "fallback-v1")
        for i in order:
            cache.put_many([shas[i]], vectors[i : i + 1])
        cache.save()

    loaded = EmbeddingCache(paths[0], "fallback-v1").get_many(shas + ["missing"])
    assert list(loaded) == shas
    np.testing.assert_array_equal(np.stack([loaded[sha] for sha in shas]), vectors)
    assert paths[0].read_bytes() == paths[1].read_bytes()  # insertion order does not leak into the file
    schema = pq.read_schema(paths[0])
    assert str(schema.field("sha256").type) == "string"
    assert str(schema.field("vector").type) == "fixed_size_list<element: float>[8]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]  # no temp files left


def test_cache_refuses_vectors_of_another_embedder(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.parquet", "fallback-v1")
    cache.put_many(["a" * 64], np.ones((1, 4), np.float32))
    cache.save()
    with pytest.raises(ValueError, match="fallback-v1"):
        EmbeddingCache(tmp_path / "e.parquet", "siglip2:google/siglip2-base-patch16-224")
    with pytest.raises(ValueError, match="vector size"):
        cache.put_many(["b" * 64], np.ones((1, 5), np.float32))


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "e.parquet"
    cache = EmbeddingCache(path, "fallback-v1")
    cache.put_many(["a" * 64], np.ones((1, 4), np.float32))
    cache.save()
    before = path.read_bytes()

    class DiskFull(pq.ParquetWriter):  # the temporary file exists, with a header, when the write fails
        def write_table(self, table, row_group_size=None):
            raise OSError("disk full")

    monkeypatch.setattr(embedders.pq, "ParquetWriter", DiskFull)
    cache.put_many(["b" * 64], np.zeros((1, 4), np.float32))
    with pytest.raises(OSError):
        cache.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["e.parquet"]


def test_rows_kept_without_a_copy_are_read_only_views(tmp_path):
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache = EmbeddingCache(tmp_path / "e.parquet", "fallback-v1")
    cache.put_many(["a" * 64, "b" * 64], [matrix[0], matrix[2]], copy=False)
    kept = cache.get_many(["b" * 64])["b" * 64]
    assert np.shares_memory(kept, matrix) and not kept.flags.writeable
    matrix[1] = 0  # the caller's matrix stays writable
    cache.save()
    assert EmbeddingCache(tmp_path / "e.parquet", "fallback-v1").get_many(["b" * 64])["b" * 64].tolist() == [8, 9, 10, 11]
