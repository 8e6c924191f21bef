"""
name:
SpineBench

dataset:
spinebench/spinebench (SPINEBENCH_REPO: another Hub id or a local folder; SPINEBENCH_REVISION: a revision)

abstract:
Multiple-choice visual question answering on spine X-ray and MRI images: spinal disease diagnosis
(SDD, one correct option of five) and spinal lesion localization (SLL, every affected lumbar level among
five). Generative scoring: the letters are read from the reply's final line by evaluation/extract.py;
SDD accuracy, SLL exact-set accuracy, precision and recall, and parse-failure rates, each over the
items of its task. Every task asks with the paper's prompt (evaluation/prompts.py: reasoning first, then
the final line) except the `_direct` ones (the short direct-answer prompt). Variants: the whole benchmark,
each task, the mini subset of the paper's table, mini without the image, mini asked once per option
rotation (CircularEval: an item counts only if every rotation is right), and mini and full asked directly.

languages:
english

tags:
medical, multimodal, multiple-choice, visual-question-answering

paper:
https://arxiv.org/abs/2510.12267
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from datasets import DatasetDict, concatenate_datasets

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lighteval loads this file by path; our modules live beside it
    sys.path.insert(0, str(ROOT))

from evaluation.offline import make_lighteval_offline_safe  # noqa: E402

make_lighteval_offline_safe()

from lighteval.metrics.metrics_corpus import CorpusLevelComputation  # noqa: E402
from lighteval.metrics.metrics_sample import SampleLevelComputation  # noqa: E402
from lighteval.metrics.utils.metric_utils import SampleLevelMetricGrouping  # noqa: E402
from lighteval.models.model_output import ModelResponse  # noqa: E402
from lighteval.tasks.lighteval_task import LightevalTask, LightevalTaskConfig  # noqa: E402
from lighteval.tasks.requests import Doc, SamplingMethod  # noqa: E402

from evaluation import images as item_images  # noqa: E402
from evaluation.extract import extract_letters, figures, reply_text  # noqa: E402
from evaluation.prompts import DEFAULT_PROMPT, build_prompt, rotate  # noqa: E402
from spinebench import COLUMNS, CONFIG_NAMES, FEATURES, LETTERS, SPLIT  # noqa: E402

REPO = os.environ.get("SPINEBENCH_REPO", "spinebench/spinebench")
REVISION = os.environ.get("SPINEBENCH_REVISION") or None
# Tokens a reply may use, per prompt: the paper's asks for reasoning first (512 cut many replies before
# their final line), the direct one for the answer and a short justification. The report shows the share of
# replies the budget cut (finish reason "length") where the backend tells.
GENERATION_SIZE = {"paper": 4096, "direct": 512}
ROTATION = "rotation"
CIRCULAR_TASKS = ("spinebench:mini_circular",)
# Doc.specific carries every column but the pixels, so a report can break results down by any of them.
SPECIFIC_COLUMNS = tuple(column for column in COLUMNS if column != "image")


# Prompt functions: one per variant.


def prompt_image(line: dict, task_name: str) -> Doc:
    return _doc(line, task_name, text_only=False)


def prompt_text_only(line: dict, task_name: str) -> Doc:
    return _doc(line, task_name, text_only=True)


def prompt_circular(line: dict, task_name: str) -> Doc:
    doc = _doc(rotate(line, line[ROTATION]), task_name, text_only=False)
    doc.specific[ROTATION] = line[ROTATION]
    return doc


def prompt_direct(line: dict, task_name: str) -> Doc:
    return _doc(line, task_name, text_only=False, prompt="direct")


def _doc(line: dict, task_name: str, text_only: bool, prompt: str = DEFAULT_PROMPT) -> Doc:
    if line["image"] is None and not text_only:
        raise ValueError(
            f"item {line['id']} has no image: a public export leaves out pixels it may not redistribute; "
            "evaluate a copy rehydrated from your own download (see spinebench.SpineBench)"
        )
    specific = {column: line[column] for column in SPECIFIC_COLUMNS}
    specific["disease"] = FEATURES["disease"].int2str(line["disease"])
    specific["prompt"] = prompt  # the report says which prompt a run used
    return Doc(
        task_name=task_name,
        query=build_prompt(line, text_only=text_only, prompt=prompt),
        choices=list(LETTERS[: len(line["options"])]),
        gold_index=[LETTERS.index(letter) for letter in line["answer"]],  # a list for both tasks: one schema
        images=[] if text_only else item_images.doc_images(line["image"]),
        specific=specific,
    )


# Metrics.


def score(specific: dict, reply: str) -> dict[str, float]:
    """Per-sample figures of a reply (evaluation/extract.py's `figures` says which)."""
    multi = specific["task"] == "localization"
    return figures(extract_letters(reply, specific["options"], multi=multi), specific["answer"], multi)


def _reply(response: ModelResponse) -> str:
    return reply_text(response.text)


class SpineBenchScore(SampleLevelComputation):
    """Parses the reply with evaluation/extract.py and scores it against the gold letters."""

    def compute(self, doc: Doc, model_response: ModelResponse, **kwargs) -> dict[str, float]:
        return score(doc.specific, _reply(model_response))


class CircularScore(SampleLevelComputation):
    """CircularEval (as in VLMEvalKit): each rotation contributes {id, correct} to its task's figure."""

    def compute(self, doc: Doc, model_response: ModelResponse, **kwargs) -> dict[str, dict]:
        name = "acc_dis" if doc.specific["task"] == "diagnosis" else "acc_loc"
        correct = score(doc.specific, _reply(model_response))[name]
        return {f"{name}_circular": {"id": doc.specific["id"], "correct": correct}}


class CircularAccuracy(CorpusLevelComputation):
    """The corpus figure `name`: the share of items whose every rotation is right.

    It is returned as {name: value}, which makes lighteval skip its bootstrap stderr: that would resample
    rotations apart from their items, and pickle this class for a process pool.
    """

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:  # no memory address: lighteval hashes the task config's text to key its cache
        return f"{type(self).__name__}({self.name!r})"

    def compute_corpus(self, items: list[dict]) -> dict[str, float]:
        rotations = defaultdict(list)
        for item in items:
            rotations[item["id"]].append(item["correct"])
        return {self.name: float(np.mean([all(correct) for correct in rotations.values()]))}


HIGHER_IS_BETTER = {
    "acc_dis": True,
    "parse_fail_dis": False,
    "acc_loc": True,
    "pre_loc": True,
    "recall_loc": True,
    "parse_fail_loc": False,
}
spinebench_metric = SampleLevelMetricGrouping(
    metric_name=list(HIGHER_IS_BETTER),
    higher_is_better=HIGHER_IS_BETTER,
    category=SamplingMethod.GENERATIVE,
    sample_level_fn=SpineBenchScore(),
    corpus_level_fn=np.mean,  # one function, not a dict: a dict's text (hashed by lighteval) holds addresses
)
CIRCULAR_NAMES = ("acc_dis_circular", "acc_loc_circular")
circular_metric = SampleLevelMetricGrouping(
    metric_name=list(CIRCULAR_NAMES),
    higher_is_better=dict.fromkeys(CIRCULAR_NAMES, True),
    category=SamplingMethod.GENERATIVE,
    sample_level_fn=CircularScore(),
    corpus_level_fn={name: CircularAccuracy(name) for name in CIRCULAR_NAMES},
)


# Rotations for CircularEval. lighteval makes exactly one Doc per dataset row and keys its prediction
# cache by the row's index, so each rotation must be a row of its own: for circular tasks the loaded
# split is repeated once per rotation, with the rotation in a column. lighteval 0.13 offers no hook for
# this, hence the wrapper around its dataset loader (installed once, inert for every other task).


def _with_rotations(download):
    def download_dataset_worker(task: LightevalTask) -> DatasetDict:
        dataset = download(task)
        if task.name not in CIRCULAR_TASKS:
            return dataset
        return DatasetDict(
            {
                split: concatenate_datasets(
                    [rows.add_column(ROTATION, [shift] * len(rows)) for shift in range(len(LETTERS))]
                )
                for split, rows in dataset.items()
            }
        )

    download_dataset_worker.spinebench_rotations = True
    return staticmethod(download_dataset_worker)


if not getattr(LightevalTask.download_dataset_worker, "spinebench_rotations", False):
    LightevalTask.download_dataset_worker = _with_rotations(LightevalTask.download_dataset_worker)


# Tasks.


def _task(
    name: str, subset: str, prompt_function, metrics=(spinebench_metric,), prompt: str = DEFAULT_PROMPT
) -> LightevalTaskConfig:
    return LightevalTaskConfig(
        name=f"spinebench:{name}",
        prompt_function=prompt_function,
        hf_repo=REPO,
        hf_subset=subset,
        hf_revision=REVISION,
        hf_avail_splits=[SPLIT],
        evaluation_splits=[SPLIT],
        few_shots_split=None,
        few_shots_select=None,
        generation_size=GENERATION_SIZE[prompt],
        metrics=list(metrics),
        version=0,
    )


TASKS_TABLE = [
    *(_task(config, config, prompt_image) for config in CONFIG_NAMES),
    _task("mini_text", "mini", prompt_text_only),
    _task("mini_circular", "mini", prompt_circular, metrics=(spinebench_metric, circular_metric)),
    *(_task(f"{config}_direct", config, prompt_direct, prompt="direct") for config in ("mini", "full")),
]


def is_ours(task_name: str) -> bool:
    return task_name.split("|")[0] in {config.name for config in TASKS_TABLE}


item_images.install(is_ours)  # images stay encoded in the Docs and out of the details (evaluation/images.py)
