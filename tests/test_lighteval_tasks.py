"""The SpineBench lighteval tasks, run end to end on a tiny Hub-style folder with the baseline models.

Expected scores are derived from the fixture rows, never from the code under test: the oracle scores 1.0
everywhere; always-A scores the share of gold-A items; under rotation, each of an item's five option
positions passes through letter A exactly once. One run goes through the real `lighteval custom` CLI,
the others through the Python Pipeline API (no network anywhere).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import requests

from evaluation.offline import make_lighteval_offline_safe, tiny_benchmarks_placeholder
from evaluation.prompts import WITHHELD
from hub_fixture import write_hub_folder
from spinebench import HEALTHY, LETTERS

ROOT = Path(__file__).resolve().parents[1]
TASK_FILE = ROOT / "evaluation" / "spinebench_tasks.py"
MODEL_FILE = ROOT / "evaluation" / "baselines.py"
TASKS = (
    "full", "diagnosis", "localization", "mini", "mini_text", "mini_circular", "mini_direct", "full_direct"
)
SUBSET = {"mini_text": "mini", "mini_circular": "mini", "mini_direct": "mini", "full_direct": "full"}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SDD_KEYS = ("acc_dis", "parse_fail_dis")
SLL_KEYS = ("acc_loc", "pre_loc", "recall_loc", "parse_fail_loc")
CIRCULAR_KEYS = ("acc_dis_circular", "acc_loc_circular")


@pytest.fixture(scope="session")
def hub(tmp_path_factory) -> Path:
    make_lighteval_offline_safe()
    return write_hub_folder(tmp_path_factory.mktemp("hub"))


def rows(hub: Path, task: str) -> list[dict]:
    config = SUBSET.get(task, task)
    return datasets.load_dataset(str(hub), config, split="test").remove_columns("image").to_list()


def keys(task: str) -> tuple[str, ...]:
    """The figures a task reports (lighteval's `_average` step may add zeros for the others)."""
    own = {"diagnosis": SDD_KEYS, "localization": SLL_KEYS}.get(task, SDD_KEYS + SLL_KEYS)
    return own + CIRCULAR_KEYS if task == "mini_circular" else own


def run(hub: Path, model: str, output_dir: Path, tasks=TASKS):
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.custom.custom_model import CustomModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPINEBENCH_REPO", str(hub))  # read when lighteval loads the task file
        pipeline = Pipeline(
            tasks=",".join(f"spinebench:{task}|0" for task in tasks),
            pipeline_parameters=PipelineParameters(
                launcher_type=ParallelismManager.CUSTOM, custom_tasks_directory=str(TASK_FILE)
            ),
            evaluation_tracker=EvaluationTracker(output_dir=str(output_dir), save_details=True),
            model_config=CustomModelConfig(
                model_name=model,
                model_definition_file_path=str(MODEL_FILE),
                cache_dir=str(output_dir / "cache"),
            ),
        )
    pipeline.evaluate()
    return pipeline


def always_a_expected(items: list[dict], task: str) -> dict[str, float]:
    """always-A's figures, counted from the gold letters (rotated: A meets each option position once)."""
    sdd = [item["answer"] for item in items if item["task"] == "diagnosis"]
    sll = [item["answer"] for item in items if item["task"] == "localization"]

    def mean(values) -> float:
        return sum(values) / len(values)

    if task == "mini_circular":  # a gold set of k levels holds letter A in k of the 5 rotations
        figures = {
            "acc_dis": 1 / len(LETTERS),
            "acc_loc": mean([(len(gold) == 1) / len(LETTERS) for gold in sll]),
            "pre_loc": mean([len(gold) / len(LETTERS) for gold in sll]),
            "recall_loc": 1 / len(LETTERS),
            "acc_dis_circular": 0.0,
            "acc_loc_circular": 0.0,
        }
    else:
        figures = {
            "acc_dis": mean([gold == ["A"] for gold in sdd]) if sdd else None,
            "acc_loc": mean([gold == ["A"] for gold in sll]) if sll else None,
            "pre_loc": mean(["A" in gold for gold in sll]) if sll else None,
            "recall_loc": mean([("A" in gold) / len(gold) for gold in sll]) if sll else None,
        }
    return {name: value for name, value in figures.items() if name in keys(task)}


def task_module():
    from lighteval.tasks.registry import Registry

    return Registry.create_custom_tasks_module(str(TASK_FILE))


def test_tasks_table():
    configs = task_module().TASKS_TABLE
    assert [config.name for config in configs] == [f"spinebench:{task}" for task in TASKS]
    for config in configs:  # lighteval keys its prediction cache by a hash of this text: no memory addresses
        assert " at 0x" not in config.__str__(lite=True), config.name


def test_bare_string_reply_is_scored_whole(hub):
    """lighteval 0.13's VLM backend returns the generation as a string, post-processed into characters."""
    from lighteval.models.model_output import ModelResponse

    module = task_module()
    row = datasets.load_dataset(str(hub), "diagnosis", split="test")[1]
    doc = module.prompt_image(row, "spinebench:diagnosis")
    reply = f"Looking at the image.\nMy final option: [{row['answer'][0]}]"
    response = ModelResponse(text=reply, text_post_processed=list(reply))
    assert module.SpineBenchScore().compute(doc, response) == {"acc_dis": 1.0, "parse_fail_dis": 0.0}


def test_placeholder_stops_the_download(monkeypatch):
    """Running lighteval's tiny_benchmarks module touches no network once the placeholder is there."""
    make_lighteval_offline_safe()

    def no_network(*args, **kwargs):
        raise AssertionError("lighteval tried to download tinyBenchmarks.pkl")

    monkeypatch.setattr(requests, "get", no_network)
    spec = importlib.util.find_spec("lighteval.tasks.tasks.tiny_benchmarks")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert tiny_benchmarks_placeholder() == Path(spec.origin).with_name("tinyBenchmarks.pkl")


def test_oracle_scores_one_everywhere(hub, tmp_path):
    results = run(hub, "oracle", tmp_path).get_results()["results"]
    for task in TASKS:
        figures = results[f"spinebench:{task}:0"]
        assert {name: figures[name] for name in keys(task)} == {
            name: 0.0 if name.startswith("parse_fail") else 1.0 for name in keys(task)
        }, task


def test_always_a_scores_the_share_of_gold_a(hub, tmp_path):
    pipeline = run(hub, "always-a", tmp_path)
    results = pipeline.get_results()["results"]
    for task in TASKS:
        expected = always_a_expected(rows(hub, task), task)
        figures = results[f"spinebench:{task}:0"]
        assert {name: figures[name] for name in expected} == pytest.approx(expected), task
    circular = [detail.doc.specific for detail in pipeline.get_details()["spinebench:mini_circular|0"]]
    for specific in circular:  # each rotation still marks the gold texts
        options = specific["options"]
        assert [options[LETTERS.index(letter)] for letter in specific["answer"]] == specific["answer_text"]
    rotations = {}
    for specific in circular:
        rotations.setdefault(specific["id"], set()).add(tuple(specific["options"]))
    assert all(len(orders) == len(LETTERS) for orders in rotations.values())


def test_mini_text_sends_no_image(hub, tmp_path):
    details = run(hub, "oracle", tmp_path, tasks=("mini", "mini_text")).get_details()
    with_image, text_only = details["spinebench:mini|0"], details["spinebench:mini_text|0"]
    assert all(d.doc.images == [d.doc.specific["id"]] for d in with_image)  # details: the id, not the pixels
    assert all(d.doc.images == [] and WITHHELD in d.doc.query for d in text_only)
    assert {d.doc.specific["prompt"] for d in with_image + text_only} == {"paper"}
    assert len(text_only) == len(with_image) == len(rows(hub, "mini"))


def test_lighteval_custom_cli(hub, tmp_path):
    """The real command line, from another folder, with every network switch off: always-Healthy on mini."""
    out = tmp_path / "out"
    command = [
        str(Path(sys.executable).with_name("lighteval")), "custom", "always-healthy", str(MODEL_FILE),
        "spinebench:mini|0,spinebench:mini_circular|0",
        "--custom-tasks", str(TASK_FILE), "--output-dir", str(out), "--save-details",
    ]
    home = {"HOME": str(tmp_path), "HF_HOME": str(tmp_path)}  # caches stay in the test's folder
    env = {**os.environ, **OFFLINE, **home, "SPINEBENCH_REPO": str(hub)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    (results_file,) = (out / "results" / "always-healthy").glob("results_*.json")
    results = json.loads(results_file.read_text())["results"]  # saved keys keep the "|"
    items = rows(hub, "mini")
    healthy = [item["answer_text"] == [HEALTHY] for item in items if item["task"] == "diagnosis"]
    share = sum(healthy) / len(healthy)
    assert results["spinebench:mini|0"]["acc_dis"] == pytest.approx(share)
    # the Healthy option moves with each rotation, and always-Healthy follows it
    assert results["spinebench:mini_circular|0"]["acc_dis_circular"] == pytest.approx(share)
    assert results["spinebench:mini_circular|0"]["acc_loc_circular"] == 0.0
    (details_dir,) = (out / "details" / "always-healthy").iterdir()
    saved = {path.name.removeprefix("details_").rsplit("_", 1)[0] for path in details_dir.glob("*.parquet")}
    assert saved == {"spinebench:mini|0", "spinebench:mini_circular|0"}
