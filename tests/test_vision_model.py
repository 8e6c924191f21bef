"""The real `lighteval accelerate ... --vision-model` path on the exported Hub folder, tiny random LLaVA.

The model's answers are noise, so the figures are only checked to be proportions; what is proven is that
every sample goes through transformers' image-text-to-text path with its image (the prompt holds the
image token, expanded by the processor to the vision tower's 16 patches) and lands in the details.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from tiny_models import build_tiny_llava

ROOT = Path(__file__).resolve().parents[1]
TASK_FILE = ROOT / "evaluation" / "spinebench_tasks.py"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
IMAGE_TOKENS = 16  # (32 / 8) ** 2 patches; the CLS token is dropped by the "default" feature strategy
SAMPLES = 6


def test_tiny_llava_loads_offline_and_expands_the_image_token(tmp_path):
    path = build_tiny_llava(tmp_path / "llava")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    message = [{"role": "user", "content": [{"type": "text", "text": "Which level?"}, {"type": "image"}]}]
    text = processor.tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
    assert text.index("Which level?") < text.index("<image>") and text.count("<image>") == 1
    inputs = processor(text=[text], images=[[Image.new("RGB", (40, 30))]], return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_index).sum() == IMAGE_TOKENS
    assert processor.tokenizer.decode(processor.tokenizer("L4/L5 Ünïcode")["input_ids"]) == "L4/L5 Ünïcode"


def test_lighteval_vision_model_on_the_export(built, tmp_path):
    hub = shutil.copytree(built.hub, tmp_path / "spinebench")
    build_tiny_llava(tmp_path / "llava")
    out = tmp_path / "out"
    # A relative model path: lighteval joins cache_dir / model_name, so an absolute one would put the
    # prediction cache (and the results' folder names) back inside the model's own path.
    model_args = f"model_name=llava,batch_size=2,generation_size=16,cache_dir={tmp_path / 'cache'}"
    command = [
        str(Path(sys.executable).with_name("lighteval")),
        "accelerate",
        model_args,
        "spinebench:mini|0",
        "--vision-model",
        "--custom-tasks",
        str(TASK_FILE),
        "--max-samples",
        str(SAMPLES),
        "--output-dir",
        str(out),
        "--save-details",
    ]
    env = {
        **os.environ,
        **OFFLINE,
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf"),
        "SPINEBENCH_REPO": str(hub),
    }
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    (results_file,) = (out / "results" / "llava").glob("results_*.json")
    figures = json.loads(results_file.read_text())["results"]["spinebench:mini|0"]
    for name in ("acc_dis", "acc_loc", "parse_fail_dis", "parse_fail_loc"):
        assert 0.0 <= figures[name] <= 1.0, name

    (details_file,) = (out / "details" / "llava").glob("*/details_spinebench:mini|0_*.parquet")
    rows = pq.read_table(details_file).to_pylist()
    assert len(rows) == SAMPLES
    image_token = AutoModelForImageTextToText.from_pretrained(tmp_path / "llava").config.image_token_index
    for row in rows:
        response = row["model_response"]
        assert response["input"].count("<image>") == 1
        assert list(response["input_tokens"]).count(image_token) == IMAGE_TOKENS
    assert list((tmp_path / "cache" / "llava").rglob("*.parquet"))
    assert not list((tmp_path / "llava").rglob("*.parquet"))  # the prediction cache stayed out of the model
