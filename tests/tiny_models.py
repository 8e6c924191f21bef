"""Builders of tiny, randomly initialised Hugging Face model folders for tests.

Each builder saves a model and a processor that load offline with `AutoModel` / `AutoProcessor`, so tests run
the real transformers code path in seconds without any download. Weights are seeded: same build, same model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import torch
from transformers import (
    GemmaTokenizer,
    PreTrainedModel,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    Siglip2Config,
    Siglip2ImageProcessor,
    Siglip2Model,
    Siglip2Processor,
    Siglip2Tokenizer,
)

SEED = 0
_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")  # ids 0..4, the Gemma order
_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789▁"
_VOCAB_SIZE = 64
# One width everywhere: text and vision towers must share it, since SigLIP compares their pooled outputs.
_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
_TEXT = {**_TOWER, "vocab_size": _VOCAB_SIZE, "max_position_embeddings": 16,
         "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}


class Saveable(Protocol):
    """Anything transformers can write into a model folder: model, processor, image processor, tokenizer."""

    def save_pretrained(self, path: Path) -> object: ...


def _character_vocab() -> dict[str, int]:
    """A character-level vocabulary: no merges needed, every lowercase word encodes."""
    tokens = (*_SPECIAL_TOKENS, *_CHARACTERS)
    assert len(tokens) <= _VOCAB_SIZE
    return {token: i for i, token in enumerate(tokens)}


def _save(model: PreTrainedModel, parts: Iterable[Saveable], path: Path) -> Path:
    """Write the model and its processor (or the processor's parts) into one `from_pretrained` folder."""
    path.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(path)
    for part in parts:
        part.save_pretrained(path)
    return path


def build_tiny_siglip2(path: Path) -> Path:
    """A NaFlex SigLIP2 (`Siglip2Model`, patch 8, at most 16 patches): the variable-resolution layout."""
    torch.manual_seed(SEED)
    config = Siglip2Config(text_config=_TEXT, vision_config={**_TOWER, "patch_size": 8, "num_patches": 16})
    processor = Siglip2Processor(
        image_processor=Siglip2ImageProcessor(patch_size=8, max_num_patches=16),
        tokenizer=Siglip2Tokenizer(vocab=_character_vocab(), merges=[]),
    )
    return _save(Siglip2Model(config), [processor], path)


def build_tiny_siglip2_fixres(path: Path) -> Path:
    """A fixed-resolution SigLIP2 in the layout of `google/siglip2-base-patch16-224`.

    The FixRes SigLIP2 checkpoints are stored as plain SigLIP (`model_type: siglip`, a fixed-size
    `SiglipImageProcessor` in `preprocessor_config.json`, a Gemma tokenizer, no `processor_config.json`),
    so code meant for the default checkpoint must handle this layout; it is saved part by part to match.
    """
    torch.manual_seed(SEED)
    config = SiglipConfig(text_config=_TEXT, vision_config={**_TOWER, "patch_size": 8, "image_size": 32})
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32}, resample=2)
    tokenizer = GemmaTokenizer(vocab=_character_vocab(), merges=[])
    return _save(SiglipModel(config), [image_processor, tokenizer], path)
