"""The image-format benchmark's own checks: a lossless candidate must give back the stored pixels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from benchmarks import formats


def stored_png(seed: int) -> bytes:
    """A noisy gray gradient (texture, as real radiographs have) stored as the build stores it."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 96)[None, :] + np.linspace(0, 40, 80)[:, None]
    pixels = np.clip(ramp + rng.normal(0, 6, ramp.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, **formats.CANDIDATES[formats.STORED])
    return buffer.getvalue()


def test_lossless_candidates_give_back_the_pixels_and_jpeg_does_not():
    figures = formats.measure([stored_png(seed) for seed in range(3)], repeats=1)
    assert set(figures) == set(formats.CANDIDATES)
    for name, row in figures.items():
        assert row["lossless"] is (name not in formats.LOSSY), name
        assert row["deterministic"] and row["bytes"] > 0 and row["decode_ms"] > 0, name
    assert figures[formats.STORED]["size_vs_stored"] == 1.0
    assert figures["webp-lossless"]["decoded_mode"] == "RGB" and figures["png-9"]["decoded_mode"] == "L"


def test_gray_in_rgb_must_repeat_the_values_in_every_channel():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert formats._same_pixels(Image.fromarray(gray, "L").convert("RGB"), gray)
    shifted = np.stack([gray, gray, gray + 1], axis=-1)
    assert not formats._same_pixels(Image.fromarray(shifted, "RGB"), gray)
