"""Builders of tiny, randomly initialised Hugging Face model folders for tests.

Each builder saves a model and a processor that load offline with `AutoModel` / `AutoProcessor`, so tests run
the real transformers code path in seconds without any download. Weights are seeded: same build, same model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    GemmaTokenizer,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
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


# A tiny LLaVA: CLIP vision tower (32x32 input, patch 8: 16 image tokens) + a one-layer Llama over bytes.
_LLAVA_IMAGE_TOKEN = "<image>"
_LLAVA_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", _LLAVA_IMAGE_TOKEN)
# Text parts in order, each image part as the image token: the layout lighteval's --vision-model prompt
# (text, then images) turns into, one image token per image, which the processor expands to 16.
_LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}"
    + _LLAVA_IMAGE_TOKEN
    + "{% endif %}{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


def _byte_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges: every text encodes (one token per byte) and decodes back."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    pad, bos, eos, image = _LLAVA_SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=pad, bos_token=bos, eos_token=eos,
        extra_special_tokens={"image_token": image}, chat_template=_LLAVA_CHAT_TEMPLATE,
    )


def build_tiny_llava(path: Path) -> Path:
    """A LLaVA (`AutoModelForImageTextToText` + `AutoProcessor`) whose prompts fit 2048 positions."""
    torch.manual_seed(SEED)
    tokenizer = _byte_tokenizer()
    vision = CLIPVisionConfig(**_TOWER, image_size=32, patch_size=8)
    text = LlamaConfig(
        **_TOWER, num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(_LLAVA_IMAGE_TOKEN),
        image_seq_length=16,
        vision_feature_layer=-1,  # the only layer of the one-layer vision tower
        vision_feature_select_strategy="default",
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=_LLAVA_CHAT_TEMPLATE,
    )
    return _save(LlavaForConditionalGeneration(config), [processor], path)
