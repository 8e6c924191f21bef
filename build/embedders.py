"""Image embedders for the hard-negative distractor stage, and a sha256-keyed cache of their vectors.

Distractors are the diseases whose library images look most like an item's image (cosine similarity), so
all an embedder must give is unit-norm vectors. `make_embedder("fallback")` needs no weights and is
bit-identical everywhere; any other spec is a SigLIP2 checkpoint (Hub id or local folder), as in the paper.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from build import artifacts

ImageSource = Callable[[], Image.Image] | bytes  # a loader, or encoded image bytes (PNG)


class Embedder(Protocol):
    """Maps images to L2-normalised float32 rows; `name` identifies the vectors (a cache key); `batch_size`
    images are decoded and embedded at a time."""

    name: str
    dim: int
    batch_size: int

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray: ...


BatchFn = Callable[[Sequence[Image.Image]], np.ndarray]


def _embed_batched(images: Sequence[Image.Image], size: int, dim: int, embed_batch: BatchFn) -> np.ndarray:
    """Fill one (n, dim) float32 result slice by slice, so working memory is bounded by `size` images."""
    out = np.empty((len(images), dim), dtype=np.float32)
    for start in range(0, len(images), size):
        out[start : start + size] = embed_batch(images[start : start + size])
    return out


# ---------------------------------------------------------------------------------------------- fallback

_SIDE = 64  # working resolution: every image is box-resized to 64x64 grayscale
_THUMB = 16  # intensity thumbnail side (4x4 blocks of the working image)
_CELL = 8  # gradient cell side in pixels: an 8x8 grid of cells
_CELLS = (_SIDE // _CELL) ** 2
# Boundaries between 8 unsigned orientation bins (22.5 degrees apart) as integer direction vectors
# (4096 * cos, 4096 * sin), written out so no libm call can differ between machines.
_BIN_EDGES = (
    (3784, 1567), (2896, 2896), (1567, 3784), (0, 4096), (-1567, 3784), (-2896, 2896), (-3784, 1567)
)
_BINS = len(_BIN_EDGES) + 1


def _orientation_table() -> np.ndarray:
    """Bin of every possible 8-bit gradient (gx, gy), flattened at (gx + 255) * 511 + gy + 255.

    Unsigned orientation (edge polarity does not matter); the bin is the number of bin edges the folded
    gradient lies counter-clockwise of, from integer cross products, so the table is exact.
    """
    gx, gy = np.meshgrid(np.arange(-255, 256), np.arange(-255, 256), indexing="ij")
    flip = (gy < 0) | ((gy == 0) & (gx < 0))
    gx, gy = np.where(flip, -gx, gx), np.where(flip, -gy, gy)
    return sum((ex * gy - ey * gx > 0).astype(np.intp) for ex, ey in _BIN_EDGES).ravel()


_ORIENTATION_BIN = _orientation_table()
_CELL_OF_PIXEL = (np.arange(_SIDE)[:, None] // _CELL) * (_SIDE // _CELL) + np.arange(_SIDE)[None, :] // _CELL


def _working_pixels(images: Sequence[Image.Image]) -> np.ndarray:
    """(n, 64, 64) int64 grayscale; Pillow's 8-bit resampling is fixed-point, hence reproducible."""
    gray = (im if im.mode == "L" else im.convert("L") for im in images)
    small = [np.asarray(im.resize((_SIDE, _SIDE), Image.Resampling.BOX)) for im in gray]
    return np.stack(small).astype(np.int64)


def _intensity_features(pixels: np.ndarray) -> np.ndarray:
    """Mean-centred 16x16 thumbnail: where the bright structures are, independent of overall brightness."""
    block = _SIDE // _THUMB
    n = len(pixels)
    thumb = pixels.reshape(n, _THUMB, block, _THUMB, block).sum(axis=(2, 4)).reshape(n, -1)
    return thumb * thumb.shape[1] - thumb.sum(axis=1, keepdims=True)


def _orientation_features(pixels: np.ndarray) -> np.ndarray:
    """HOG-like: per 8x8-pixel cell, gradient magnitude per orientation bin, smoothed across neighbour cells.

    Orientation is what separates a vertical spine from a tilted or curved one; the smoothing keeps a shape
    shifted by part of a cell close to the original.
    """
    n = len(pixels)
    padded = np.pad(pixels, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    gy = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
    bins = _ORIENTATION_BIN[(gx + 255) * 511 + gy + 255]
    slot = (np.arange(n)[:, None, None] * _BINS + bins) * _CELLS + _CELL_OF_PIXEL
    # Float64 sums of integers below 2**53 are exact in any order, so bincount stays reproducible.
    votes = np.bincount(slot.ravel(), weights=(np.abs(gx) + np.abs(gy)).ravel(), minlength=n * _BINS * _CELLS)
    cells = votes.astype(np.int64).reshape(n, _BINS, _SIDE // _CELL, _SIDE // _CELL)
    return _smooth_cells(cells).reshape(n, -1)


def _smooth_cells(cells: np.ndarray) -> np.ndarray:
    """Integer [1, 2, 1] x [1, 2, 1] filter over the cell grid (last two axes), edges replicated."""
    p = np.pad(cells, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    rows = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + 2 * rows[..., 1:-1] + rows[..., 2:]


def _unit_half(block: np.ndarray) -> np.ndarray:
    """Scale each row to norm 1/sqrt(2) using an exact integer sum of squares, so two halves make a unit row.

    Only correctly rounded operations (sqrt, divide) touch floats, which keeps results bit-identical
    across machines and BLAS builds. A featureless row (blank image) becomes a constant row.
    """
    block = np.where((block == 0).all(axis=1, keepdims=True), 1, block)
    squares = (block * block).sum(axis=1, keepdims=True)
    return block / np.sqrt(2.0 * squares.astype(np.float64))


class FallbackEmbedder:
    """Deterministic, weight-free embedder: layout (intensity thumbnail) plus edge orientations (HOG-like).

    Used by the demo and tests, and whenever no SigLIP2 checkpoint is available. Change `name` whenever the
    features change, since cached vectors are keyed by it.
    """

    name = "fallback-v1"
    dim = _THUMB * _THUMB + _BINS * _CELLS
    batch_size = 32  # images decoded at a time: the numpy pass below is cheap per image at any batch
    chunk = 256  # images per numpy pass: bounds the int64 working arrays (~50 MB)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return _embed_batched(images, self.chunk, self.dim, self._embed_chunk)

    @staticmethod
    def _embed_chunk(images: Sequence[Image.Image]) -> np.ndarray:
        pixels = _working_pixels(images)
        return np.hstack([_unit_half(_intensity_features(pixels)), _unit_half(_orientation_features(pixels))])


# ---------------------------------------------------------------------------------------------- SigLIP2


class Siglip2Embedder:
    """SigLIP2 image tower (the paper's encoder) from a Hub id or a local checkpoint folder.

    Uses the checkpoint's image processor alone: the text tokenizer is not needed, and
    `Siglip2Processor`'s own image defaults (patch 16, 256 patches) would override the checkpoint's saved
    values. Works for NaFlex (`Siglip2Model`) and FixRes checkpoints; `google/siglip2-base-patch16-224` is
    stored as plain SigLIP (`SiglipModel`), and both return pooled image features from `get_image_features`.
    """

    def __init__(self, model: str, batch_size: int | None = None, device: str = "cpu") -> None:
        import torch  # heavy imports only when a real model is asked for
        from transformers import AutoImageProcessor, AutoModel

        self._torch = torch
        self.batch_size = batch_size or default_batch_size(device)
        self.device = device
        self.processor = AutoImageProcessor.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(device).eval()
        self.dim = int(self.model.config.vision_config.hidden_size)
        local = Path(model)
        self.name = f"siglip2:{local.resolve().name if local.exists() else model}"

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return _embed_batched(images, self.batch_size, self.dim, self._embed_batch)

    def _embed_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        torch = self._torch
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        inputs = self.processor(images=rgb, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            features = self.model.get_image_features(**inputs)
            if not isinstance(features, torch.Tensor):  # transformers 5 returns an output object
                features = features.pooler_output
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy()


# Images per SigLIP2 batch when none is asked for. On CPU the throughput is flat past a few dozen images
# (benchmarks/embed_bench.py); on a GPU a batch must be large enough to fill the device. 256 images of the
# base model at 256 patches need at most ~2 GB at a time under inference_mode (one layer's 12 x 256 x 256
# attention scores and 256 x 3,072 MLP activations per image, float32), inside any CUDA card.
BATCH_SIZE = {"cpu": 32, "cuda": 256}


def default_batch_size(device: str) -> int:
    """The batch for a torch device string ("cpu", "cuda", "cuda:1", ...); other devices get the CPU's."""
    return BATCH_SIZE.get(device.split(":")[0], BATCH_SIZE["cpu"])


def make_embedder(spec: str, batch_size: int | None = None, device: str = "cpu") -> Embedder:
    """`fallback` -> FallbackEmbedder; anything else is a SigLIP2 Hub id or local checkpoint path, embedding
    `batch_size` images at a time (default: `default_batch_size(device)`)."""
    if spec == "fallback":
        return FallbackEmbedder()
    return Siglip2Embedder(spec, batch_size=batch_size, device=device)


_progress: list[tqdm] = []  # the bar of the innermost `embedding_progress()` block, if any


@contextmanager
def embedding_progress(total: int, desc: str = "embedding") -> Iterator[tqdm]:
    """A progress bar over `total` images that every `embed_with_cache` call inside the block advances,
    for images found in a cache as for images embedded (SigLIP2 on CPU: minutes to hours at full size)."""
    with tqdm(total=total, desc=desc, unit="img", leave=False) as bar:
        _progress.append(bar)
        try:
            yield bar
        finally:
            _progress.remove(bar)


def _advance(count: int) -> None:
    if _progress and count:
        _progress[-1].update(count)


# ---------------------------------------------------------------------------------------------- cache

_NAME_KEY = b"spinebench.embedder"


_SAVE_ROWS = 8192  # vectors per written slice (and Parquet row group)


class EmbeddingCache:
    """Vectors keyed by image sha256 in one Parquet file, so a rerun embeds nothing it has seen.

    The file records the embedder name; opening it for another embedder is an error rather than a silent
    mix of incompatible vectors. Vectors handed out are read-only views.
    """

    def __init__(self, path: Path, embedder_name: str) -> None:
        self.path = Path(path)
        self.embedder_name = embedder_name
        self._vectors: dict[str, np.ndarray] = {}
        self._dim: int | None = None  # fixed by the first vectors loaded or put
        self._dirty = False
        if self.path.exists():
            self._load()

    def __len__(self) -> int:
        return len(self._vectors)

    def _load(self) -> None:
        """Read the file a row group at a time into one matrix: the vectors are held once, not twice."""
        file = pq.ParquetFile(self.path)
        stored = (file.schema_arrow.metadata or {}).get(_NAME_KEY, b"").decode()
        if stored != self.embedder_name:
            raise ValueError(f"{self.path} holds vectors of embedder {stored!r}, not {self.embedder_name!r}")
        matrix = np.empty((file.metadata.num_rows, file.schema_arrow.field("vector").type.list_size), np.float32)
        shas: list[str] = []
        for group in range(file.num_row_groups):
            part = file.read_row_group(group)
            matrix[len(shas):len(shas) + len(part)] = part.column("vector").combine_chunks().flatten().to_numpy(
                ).reshape(len(part), matrix.shape[1])
            shas += part.column("sha256").to_pylist()
        matrix.setflags(write=False)
        self._vectors = dict(zip(shas, matrix))
        self._dim = matrix.shape[1]

    def get_many(self, shas: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached subset of `shas`."""
        return {sha: self._vectors[sha] for sha in shas if sha in self._vectors}

    def put_many(self, shas: Sequence[str], vectors: np.ndarray | Sequence[np.ndarray], copy: bool = True) -> None:
        """Add or replace vectors (one row per sha); kept in memory until `save()`.

        By default the cache keeps its own copy (callers may reuse their buffer); with copy=False it keeps the
        rows it is given, e.g. views into a caller's matrix that stays unchanged, so nothing is held twice.
        """
        rows = list(np.array(vectors, dtype=np.float32, ndmin=2)) if copy else list(vectors)
        if len(rows) != len(shas) or any(row.ndim != 1 or row.dtype != np.float32 for row in rows):
            raise ValueError(f"expected {len(shas)} float32 vectors, got {len(rows)} of shapes "
                             f"{sorted({row.shape for row in rows})}")
        if not rows:
            return
        dims = {row.shape[0] for row in rows}
        if len(dims) != 1 or self._dim not in (None, *dims):
            raise ValueError(f"vector size {sorted(dims)} does not match the cache's {self._dim}")
        for row in rows:
            row.setflags(write=False)  # on a view: read-only through the cache, the caller's matrix is untouched
        self._vectors.update(zip(shas, rows))
        self._dim = dims.pop()
        self._dirty = True

    def save(self) -> None:
        """Write atomically (temp file + rename) so a killed build never leaves a truncated cache."""
        if not self._dirty:
            return
        shas = sorted(self._vectors)  # stable row order: same content, same file
        schema = pa.schema([("sha256", pa.string()), ("vector", pa.list_(pa.float32(), self._dim))],
                           metadata={_NAME_KEY: self.embedder_name.encode()})
        with artifacts.parquet_writer(self.path, schema, compression="snappy", use_dictionary=False) as writer:
            for start in range(0, len(shas), _SAVE_ROWS):  # a slice at a time: no second copy of it all
                part = shas[start:start + _SAVE_ROWS]
                matrix = np.stack([self._vectors[sha] for sha in part])
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), self._dim)
                writer.write_table(pa.table({"sha256": pa.array(part, pa.string()), "vector": vectors},
                                            schema=schema))  # unique shas, dense floats: no dictionary
        self._dirty = False


def _decode(source: ImageSource) -> Image.Image:
    """Decode only when a batch is embedded, so pending items cost bytes or a closure, not pixels."""
    return Image.open(io.BytesIO(source)) if isinstance(source, bytes) else source()


def embed_with_cache(
    embedder: Embedder,
    cache: EmbeddingCache,
    items: Iterable[tuple[str, ImageSource]],
    rows: Mapping[str, Sequence[int]],
    batch_size: int | None = None,
) -> np.ndarray:
    """The (n, dim) float32 matrix with each sha's vector at its `rows` (n = 1 + the largest row).

    Cached vectors are copied in; only misses are decoded and embedded, `batch_size` at a time, and written
    straight into their rows, which the cache keeps as views: the vectors are in memory once, whatever the
    number of images. Items stream (one batch of sources, `batch_size` or the embedder's, is held at a time);
    a sha met twice is embedded once; items whose sha is not in `rows` are skipped. Call `cache.save()` to
    keep the new vectors. Inside an `embedding_progress()` block, each image done advances its bar.
    """
    batch_size = batch_size or embedder.batch_size
    out = np.empty((1 + max((max(r) for r in rows.values()), default=-1), embedder.dim), dtype=np.float32)
    done: set[str] = set()
    pending: dict[str, ImageSource] = {}

    def flush() -> None:
        shas = list(pending)
        for sha, vector in zip(shas, embedder.embed([_decode(pending[sha]) for sha in shas])):
            out[rows[sha]] = vector
        cache.put_many(shas, [out[rows[sha][0]] for sha in shas], copy=False)
        done.update(shas)
        pending.clear()
        _advance(len(shas))

    for sha, source in items:
        if sha in done or sha in pending or sha not in rows:
            continue
        cached = cache.get_many([sha])
        if cached:
            out[rows[sha]] = cached[sha]
            done.add(sha)
            _advance(1)
            continue
        pending[sha] = source
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    if len(done) != len(rows):
        raise ValueError(f"no pixels for {len(rows) - len(done)} of {len(rows)} images")
    return out
