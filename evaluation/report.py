"""Turn lighteval's saved details into the paper's table, breakdowns, confidence intervals and figures.

RUN_DIR is lighteval's `--output-dir` (run with `--save-details`); it may hold several models. For each
model the report reads the newest details file of `--task` (lighteval adds a dated folder per run), not
just the results JSON, so that every figure can be broken down by the dataset columns Doc.specific keeps.
Per-item scores are lighteval's own (the details' `metric` column), so the table equals the results
JSON. The letters a reply gave are not saved: they are re-parsed with evaluation/extract.py, and an item
whose re-parse disagrees with lighteval's parse-failure flag is counted as a warning.

Written to DIR:
  report.md     the paper's table for each model with 95% CIs, then the paper's own rows (labelled: its
                numbers on its own subset); parse failures; gold and predicted letters; circular accuracy
                when `<task>_circular` was run; accuracy by disease, modality, source and paraphrase
  report.json   the same figures, as fractions
  figures/      per model: <model>_disease_accuracy.png (with CIs), <model>_sdd_confusion.png

Confidence intervals: 95% percentile intervals of a cluster bootstrap over patients (default 2,000
resamples, seed 0). Items of one patient are correlated (an image carries an SDD and an SLL item; an RSNA
study gives several slices), so intervals that treat items as independent are too narrow. Resampling
whole patients keeps that correlation, needs no normal approximation for accuracies near 0 or 1 and
handles subgroup accuracies (ratios with a random denominator); and since every figure of a model is
computed on the same resamples, Overall (the mean of two accuracies over shared patients) gets its
interval from the same draws. A patient is `source/patient_id` (ids are only unique within a release).
A subgroup's interval ignores the resamples that drew none of its patients.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

from evaluation.extract import extract_letters, reply_text  # noqa: E402
from spinebench import DISEASES, LETTERS  # noqa: E402

COMMAND = "report"
HELP = "lighteval's saved details -> the paper's table, breakdowns, clustered CIs, figures"

PAPER_RESULTS = Path(__file__).with_name("paper_results.yaml")
LEVEL = 0.95
UNPARSED = "unparsed"
TASK_LABELS = {"diagnosis": "SDD", "localization": "SLL"}
FACETS = ("disease", "modality", "source", "question_id")
# lighteval's per-item figures, as evaluation/spinebench_tasks.py names them for each kind of item.
ITEM_METRICS = {
    "diagnosis": {"correct": "acc_dis", "parse_fail": "parse_fail_dis"},
    "localization": {
        "correct": "acc_loc",
        "precision": "pre_loc",
        "recall": "recall_loc",
        "parse_fail": "parse_fail_loc",
    },
}
# The paper's columns: each a mean of one per-item figure over the items of one task; Overall comes after.
COLUMNS = {
    "sdd_acc": ("diagnosis", "correct"),
    "sll_acc": ("localization", "correct"),
    "sll_pre": ("localization", "precision"),
    "sll_recall": ("localization", "recall"),
}
ACCURACY = {"diagnosis": "sdd_acc", "localization": "sll_acc"}
HEADERS = {"sdd_acc": "SDD Acc", "sll_acc": "SLL Acc", "sll_pre": "SLL Pre", "sll_recall": "SLL Recall",
           "overall": "Overall"}
SPECIFIC = ("id", "task", "disease", "modality", "source", "question_id", "options")


# Reading lighteval's output.


def latest_details(run_dir: Path, task: str) -> dict[str, Path]:
    """Model name -> its newest details file of `task` (`suite:name`, or `suite:name|fewshot`)."""
    pattern = task if "|" in task else f"{task}|*"
    root = run_dir / "details"
    latest: dict[str, Path] = {}
    for path in root.glob(f"**/details_{pattern}_*.parquet"):
        model = path.parent.parent.relative_to(root).as_posix()  # `org/name` models nest one folder deeper
        if model not in latest or path.parent.name > latest[model].parent.name:  # ISO dates sort as text
            latest[model] = path
    return dict(sorted(latest.items()))


def read_items(path: Path) -> pd.DataFrame:
    """One row per scored prompt: dataset columns, patient, gold and re-parsed letters, lighteval's scores."""
    table = pq.read_table(
        path,
        columns=["doc.specific", "model_response.text", "model_response.text_post_processed", "metric"],
    )
    specifics, metrics = table["specific"].to_pylist(), table["metric"].to_pylist()
    responses = table.select(["text", "text_post_processed"]).to_pylist()
    rows = []
    for specific, response, metric in zip(specifics, responses, metrics):
        task = specific["task"]
        reply = reply_text(response["text"], response["text_post_processed"])
        predicted = extract_letters(reply, specific["options"], multi=task == "localization")
        rows.append(
            {
                **{column: specific[column] for column in SPECIFIC},
                "patient": f"{specific['source']}/{specific['patient_id']}",
                "gold": tuple(sorted(specific["answer"])),
                "predicted": None if predicted is None else tuple(predicted),
                **{name: metric[key] for name, key in ITEM_METRICS[task].items()},
            }
        )
    return pd.DataFrame(rows)


def _disease_order(name: str) -> tuple[int, str]:
    """The label vocabulary's order, anything else (`unparsed`) after it."""
    return (DISEASES.index(name) if name in DISEASES else len(DISEASES), name)


def circular_task(task: str) -> str:
    """The CircularEval variant of a task (itself when it is one)."""
    name, bar, fewshot = task.partition("|")
    return task if name.endswith("_circular") else f"{name}_circular{bar}{fewshot}"


# Confidence intervals.


class ClusterBootstrap:
    """Resamples of whole patients, drawn once (seeded) and shared by every figure of one item set.

    A figure is the mean of a per-item value over some items; in a resample each item weighs as many
    times as its patient was drawn, so the resampled mean is (counts @ patient sums) / (counts @ sizes).
    """

    CHUNK = 250  # resamples per block: memory stays (CHUNK x patients) whatever the item count

    def __init__(self, clusters: Sequence[str], resamples: int = 2000, seed: int = 0):
        names, self.cluster = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
        self.size = len(names)
        rng = np.random.default_rng(seed)
        uniform = np.full(self.size, 1 / self.size)
        self.blocks = [
            rng.multinomial(self.size, uniform, size=min(self.CHUNK, resamples - start)).astype(np.uint16)
            for start in range(0, resamples, self.CHUNK)
        ]

    def draws(self, values: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """The mean of `values` over each mask's items (masks: groups x items) in each resample.

        Returns resamples x groups, NaN where a resample drew none of a group's patients. Groups go
        together so that one pass over the resamples serves them all.
        """
        def per_patient(weights: np.ndarray) -> np.ndarray:
            return np.bincount(self.cluster, weights=weights, minlength=self.size)

        sums = [per_patient(np.where(mask, values, 0.0)) for mask in masks]
        sizes = [per_patient(mask.astype(float)) for mask in masks]
        totals = np.stack(sums + sizes, axis=1)
        used = totals[:, len(masks):].any(axis=1)
        # float blocks let numpy hand the product to BLAS; integer ones would take its slow generic loop
        resampled = np.concatenate([block[:, used].astype(float) @ totals[used] for block in self.blocks])
        with np.errstate(invalid="ignore", divide="ignore"):
            return resampled[:, : len(masks)] / resampled[:, len(masks) :]

    def means(self, values: np.ndarray, masks: np.ndarray) -> list[dict[str, Any]]:
        """Each mask's mean with its interval and item count."""
        draws = self.draws(values, masks)
        return [estimate(float(values[mask].mean()), draws[:, group], int(mask.sum()))
                for group, mask in enumerate(masks)]


def estimate(value: float, draws: np.ndarray, n: int) -> dict[str, Any]:
    """A point value with the percentile interval of its bootstrap draws."""
    finite = draws[np.isfinite(draws)]
    tail = 100 * (1 - LEVEL) / 2
    if not finite.size:
        return {"value": value, "lo": None, "hi": None, "n": n}
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return {"value": value, "lo": float(lo), "hi": float(hi), "n": n}


# Figures of one model.


def paper_table(items: pd.DataFrame, bootstrap: ClusterBootstrap) -> dict[str, dict]:
    """The paper's columns present in `items`; Overall = the mean of SDD and SLL accuracy (macro)."""
    table, draws = {}, {}
    for name, (task, figure) in COLUMNS.items():
        mask = (items["task"] == task).to_numpy()
        if mask.any():
            values = items[figure].to_numpy(dtype=float)
            draws[name] = bootstrap.draws(values, mask[None])[:, 0]
            table[name] = estimate(float(values[mask].mean()), draws[name], int(mask.sum()))
    if "sdd_acc" in table and "sll_acc" in table:
        value = (table["sdd_acc"]["value"] + table["sll_acc"]["value"]) / 2
        n = table["sdd_acc"]["n"] + table["sll_acc"]["n"]
        table["overall"] = estimate(value, (draws["sdd_acc"] + draws["sll_acc"]) / 2, n)
    return table


def breakdown(items: pd.DataFrame, bootstrap: ClusterBootstrap, facet: str) -> list[dict]:
    """Accuracy per task and value of one dataset column."""
    groups = items.groupby(["task", items[facet].fillna("(none)")]).indices  # sorted keys -> positions
    masks = np.zeros((len(groups), len(items)), dtype=bool)
    for row, positions in enumerate(groups.values()):
        masks[row, positions] = True
    estimates = bootstrap.means(items["correct"].to_numpy(dtype=float), masks)
    return [{"task": task, "group": group, **figure} for (task, group), figure in zip(groups, estimates)]


def parse_failures(items: pd.DataFrame) -> dict[str, dict]:
    return {task: {"rate": float(rows["parse_fail"].mean()), "failed": int(rows["parse_fail"].sum()),
                   "n": len(rows)}
            for task, rows in items.groupby("task")}


def letter_counts(items: pd.DataFrame) -> dict[str, dict]:
    """Per task, how often each letter is gold and is answered; an SLL set counts each of its letters."""
    counts = {}
    for task, rows in items.groupby("task"):
        gold = Counter(letter for letters in rows["gold"] for letter in letters)
        answered = [letters for letters in rows["predicted"] if letters is not None]
        predicted = Counter(letter for letters in answered for letter in letters)
        counts[task] = {
            "gold": {letter: gold[letter] for letter in LETTERS},
            "predicted": {**{letter: predicted[letter] for letter in LETTERS},
                          UNPARSED: len(rows) - len(answered)},
        }
    return counts


def sdd_confusion(items: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Gold disease -> the option text answered (or `unparsed`) -> count, over SDD items."""
    pairs = Counter(
        (row.disease, row.options[LETTERS.index(row.predicted[0])] if row.predicted else UNPARSED)
        for row in items[items["task"] == "diagnosis"].itertuples()
    )
    confusion: dict[str, dict[str, int]] = {}
    for (gold, answered), count in sorted(pairs.items(), key=lambda pair: [*map(_disease_order, pair[0])]):
        confusion.setdefault(gold, {})[answered] = count
    return confusion


def circular_accuracy(rotations: pd.DataFrame, resamples: int, seed: int) -> dict[str, dict]:
    """CircularEval: the share of items whose every rotation is right, per task, with clustered CIs."""
    per_item = rotations.groupby(["task", "id", "patient"], as_index=False)["correct"].min()  # 1: all right
    bootstrap = ClusterBootstrap(per_item["patient"], resamples, seed)
    tasks = sorted(set(per_item["task"]))
    masks = np.array([(per_item["task"] == task).to_numpy() for task in tasks])
    estimates = bootstrap.means(per_item["correct"].to_numpy(dtype=float), masks)
    return {ACCURACY[task]: figure for task, figure in zip(tasks, estimates)}


def summarize(items: pd.DataFrame, rotations: pd.DataFrame | None, resamples: int, seed: int) -> dict:
    """Every figure of one model's run."""
    bootstrap = ClusterBootstrap(items["patient"], resamples, seed)
    return {
        "items": len(items),
        "patients": bootstrap.size,
        "table": paper_table(items, bootstrap),
        "parse_failures": parse_failures(items),
        "parse_mismatches": int((items["predicted"].isna() != (items["parse_fail"] == 1)).sum()),
        "letters": letter_counts(items),
        "sdd_confusion": sdd_confusion(items),
        "circular": None if rotations is None else circular_accuracy(rotations, resamples, seed),
        "breakdowns": {facet: breakdown(items, bootstrap, facet) for facet in FACETS},
    }


def paper_rows() -> dict[str, Any]:
    """The paper's reference rows, as fractions like everything else in report.json."""
    paper = yaml.safe_load(PAPER_RESULTS.read_text(encoding="utf-8"))
    for row in paper["rows"]:
        row.update({name: None if row[name] is None else row[name] / 100 for name in HEADERS})
    return paper


def build_report(run_dir: Path, task: str, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    details = latest_details(run_dir, task)
    if not details:
        raise FileNotFoundError(f"no details of {task} under {run_dir / 'details'}: run lighteval with "
                                "--output-dir RUN_DIR --save-details")
    rotations = latest_details(run_dir, circular_task(task))
    models = {}
    for model, path in details.items():
        circular = read_items(rotations[model]) if model in rotations else None
        models[model] = {
            "details": path.relative_to(run_dir).as_posix(),
            **summarize(read_items(path), circular, resamples, seed),
        }
    return {
        "task": task,
        "ci": {"method": "percentile, cluster bootstrap over patients (source/patient_id)", "level": LEVEL,
               "resamples": resamples, "seed": seed},
        "models": models,
        "paper": paper_rows(),
    }


# Rendering.


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _with_ci(figure: dict | None) -> str:
    if figure is None:
        return "-"
    return f"{_percent(figure['value'])} [{_percent(figure['lo'])}, {_percent(figure['hi'])}]"


def _markdown_table(header: Sequence[str], rows: list[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def headline(report: dict) -> str:
    """The paper's table: this run's models (95% CI in brackets), then the paper's rows marked †."""
    paper = report["paper"]
    rows = [[model, *(_with_ci(summary["table"].get(name)) for name in HEADERS)]
            for model, summary in report["models"].items()]
    rows += [[f"{row['model']} †", *(_percent(row[name]) for name in HEADERS)] for row in paper["rows"]]
    return "\n".join([
        f"SpineBench, {report['task']}: accuracy, precision and recall in %, 95% CI clustered by patient",
        "",
        *_markdown_table(["Model", *HEADERS.values()], rows),
        "",
        f"† The paper's numbers as reported ({paper['source']}) on {paper['reported_on']}: another item "
        "set and other model runs, a reference point, not comparable run for run.",
        *(f"  {row['model']}: {row['note']}." for row in paper["rows"] if row.get("note")),
    ])


def _overview(report: dict) -> list[str]:
    ci = report["ci"]
    counts = ", ".join(f"{model}: {summary['items']} items of {summary['patients']} patients"
                       for model, summary in report["models"].items())
    return [f"# SpineBench report: {report['task']}", "", "## The paper's table", "", headline(report), "",
            f"Items: {counts}. Intervals: {ci['method']}, {ci['resamples']} resamples, seed {ci['seed']} "
            "(evaluation/report.py says why).", ""]


def _parse_failure_lines(models: dict) -> list[str]:
    rows = [[model, TASK_LABELS[task], figure["failed"], figure["n"], _percent(figure["rate"])]
            for model, summary in models.items() for task, figure in summary["parse_failures"].items()]
    header = ["Model", "Task", "Unparsed", "n", "Rate %"]
    lines = ["## Parse failures", "", *_markdown_table(header, rows), ""]
    mismatched = {model: summary["parse_mismatches"] for model, summary in models.items()
                  if summary["parse_mismatches"]}
    if mismatched:
        lines += [f"**Warning**: re-parsing disagrees with lighteval's parse-failure flag on items of "
                  f"{mismatched} (details scored by another version of evaluation/extract.py?): the letter "
                  "counts and the confusion matrix may not match the scores.", ""]
    return lines


def _letter_lines(models: dict) -> list[str]:
    rows = [[model, TASK_LABELS[task], kind, *(counts[kind].get(key, "-") for key in (*LETTERS, UNPARSED))]
            for model, summary in models.items() for task, counts in summary["letters"].items()
            for kind in ("gold", "predicted")]
    header = ["Model", "Task", "Letters", *LETTERS, UNPARSED]
    return ["## Gold and predicted letters (position bias)", "", *_markdown_table(header, rows), ""]


def _circular_lines(models: dict) -> list[str]:
    rows = [[model, *(_with_ci(summary["circular"].get(name)) for name in ("sdd_acc", "sll_acc"))]
            for model, summary in models.items() if summary["circular"]]
    if not rows:
        return []
    return ["## Circular accuracy (an item counts only if right in every rotation of its options)", "",
            *_markdown_table(["Model", "SDD Acc", "SLL Acc"], rows), ""]


def _breakdown_lines(models: dict, facet: str) -> list[str]:
    rows = [[model, TASK_LABELS[row["task"]], row["group"], _with_ci(row), row["n"]]
            for model, summary in models.items() for row in summary["breakdowns"][facet]]
    return [f"### By {facet}", "", *_markdown_table(["Model", "Task", facet, "Acc [95% CI]", "n"], rows), ""]


def markdown(report: dict, figures: list[str]) -> str:
    models = report["models"]
    lines = [*_overview(report), *audit_lines(report.get("audit_baselines")),
             *_parse_failure_lines(models), *_letter_lines(models),
             *_circular_lines(models), "## Breakdowns", ""]
    for facet in FACETS:
        lines += _breakdown_lines(models, facet)
    lines += ["## Figures", "", *(f"![{Path(path).stem}]({path})" for path in figures)]
    return "\n".join(lines) + "\n"


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model)


def plot_disease_accuracy(model: str, rows: list[dict], path: Path) -> None:
    """Horizontal bars of accuracy per disease, one panel per task, 95% CIs as error bars."""
    tasks = sorted({row["task"] for row in rows})
    figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        own = [row for row in rows if row["task"] == task]
        own.sort(key=lambda row: _disease_order(row["group"]))
        value, lo, hi = (100 * np.array([row[key] for row in own], dtype=float)
                         for key in ("value", "lo", "hi"))  # a missing bound (None) draws no error bar
        axis.barh(range(len(own)), value, xerr=[value - lo, hi - value], color="tab:blue", ecolor="black",
                  capsize=3)
        axis.set_yticks(range(len(own)), [f"{row['group']} (n={row['n']})" for row in own])
        axis.invert_yaxis()
        axis.set_xlim(0, 100)
        axis.set_xlabel("accuracy %, 95% CI clustered by patient")
        axis.set_title(f"{model}: {TASK_LABELS[task]}")
    _save(figure, path)


def plot_confusion(model: str, confusion: dict[str, dict[str, int]], path: Path) -> None:
    """Counts of gold disease (rows) against the disease answered (columns: the rows' diseases first, so
    the diagonal is right, then other answers, `unparsed` last)."""
    gold = sorted(confusion, key=_disease_order)
    others = {name for row in confusion.values() for name in row} - set(gold) - {UNPARSED}
    answered = gold + sorted(others, key=_disease_order) + [UNPARSED]
    counts = np.array([[confusion[row].get(column, 0) for column in answered] for row in gold])
    figure, axis = plt.subplots(figsize=(3.0 + 0.6 * len(answered), 2.5 + 0.45 * len(gold)))
    axis.imshow(counts, cmap="Blues")
    for (i, j), count in np.ndenumerate(counts):
        axis.text(j, i, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > counts.max() / 2 else "black")
    axis.set_xticks(range(len(answered)), answered, rotation=45, ha="right")
    axis.set_yticks(range(len(gold)), gold)
    axis.set_xlabel("answered")
    axis.set_ylabel("gold")
    axis.set_title(f"{model}: SDD confusion")
    _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: identical bytes per run
    plt.close(figure)


def write_report(report: dict, out: Path) -> None:
    """report.json, the figures and report.md (which links them) under `out`."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figures = []
    for model, summary in report["models"].items():
        figures.append(f"figures/{_slug(model)}_disease_accuracy.png")
        plot_disease_accuracy(model, summary["breakdowns"]["disease"], out / figures[-1])
        if summary["sdd_confusion"]:
            figures.append(f"figures/{_slug(model)}_sdd_confusion.png")
            plot_confusion(model, summary["sdd_confusion"], out / figures[-1])
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    (out / "report.md").write_text(markdown(report, figures), encoding="utf-8")


# The build's validity audit as baseline rows (build/audit.py; read from the dataset folder's build info).


def audit_baselines(dataset: Path | None, task: str) -> dict[str, Any] | None:
    """The audit rows of the configuration `task` scores, from DATASET/spinebench_build.json; None when the
    dataset is not a local folder or was built before the audit existed."""
    from build import audit
    from spinebench import BUILD_INFO

    path = dataset / BUILD_INFO if dataset is not None else None
    if path is None or not path.is_file():
        return None
    found = json.loads(path.read_text(encoding="utf-8"))["items"].get("audit")
    config = task.split(":", 1)[-1].split("|", 1)[0].removesuffix("_circular").removesuffix("_text")
    if found is None or config not in found["configs"]:
        return None
    return {"dataset": str(dataset), "config": config, "rows": audit.table_rows(found, config)}


def audit_lines(baselines: dict[str, Any] | None) -> list[str]:
    if not baselines:
        return []
    return [f"## Without the image (baseline rows of this build's `{baselines['config']}`, build/audit.py)", "",
            *_markdown_table(["Attack (no image)", "SDD Acc %", "SLL Acc %"], baselines["rows"]), "",
            "A model's score means image reading only where it beats these rows, not only chance.", ""]


# Command line.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="lighteval's --output-dir of runs with --save-details (one or several models)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where report.md, report.json and figures/ go")
    parser.add_argument("--task", default="spinebench:mini",
                        help="the task to report, e.g. spinebench:mini or spinebench:full|0 (default: "
                             "%(default)s); its _circular variant is read too when present")
    parser.add_argument("--resamples", type=int, default=2000,
                        help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    repo = os.environ.get("SPINEBENCH_REPO", "")
    parser.add_argument("--dataset", type=Path, default=Path(repo) if repo and Path(repo).is_dir() else None,
                        help="the local dataset folder scored (default: $SPINEBENCH_REPO if a folder), whose "
                             "validity audit is shown as baseline rows")


def main(args: argparse.Namespace) -> int:
    try:
        report = build_report(args.run_dir, args.task, args.resamples, args.seed)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report["audit_baselines"] = audit_baselines(args.dataset, args.task)
    write_report(report, args.out)
    print(headline(report))
    print(f"\nreport: {args.out / 'report.md'}")
    return 0
