"""What a lighteval run costs besides the model: the weightless random baseline on a built Hub folder.

    python -m benchmarks.eval_bench --hub OUT/spinebench [--task mini] [--repeats 3] [--out eval.json]

Each run is a fresh interpreter (lighteval's Python API, as `lighteval custom random ...` runs it) timing
the pipeline's set-up (task file, dataset, Docs), `evaluate()` (the model and the metrics) and
`save_and_push_results()` (EvaluationTracker.save: results and the details datasets, built even without
--save-details), with the process's peak RSS after evaluate and at the end. Two modes run side by side in
every repeat: `encoded` (the project: Docs keep PNG bytes, details carry item ids) and `eager` (the code
before, rebuilt in the child: rows decoded by datasets, RGB images in every Doc and in the details). The
scores of both must be identical. Targets: the details step at most 10% of the run, peak memory of a
real-size mini run at most 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TASK_FILE = ROOT / "evaluation" / "spinebench_tasks.py"
MODEL_FILE = ROOT / "evaluation" / "baselines.py"
MODES = ("encoded", "eager")
TARGETS = {"details_share": 0.10, "peak_mb": 1536.0}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def peak_rss_mb() -> int:
    """This process's high-water RSS (VmHWM: reset by exec, unlike ru_maxrss, which keeps the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    import resource  # not Linux: an upper bound

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def child(hub: Path, task: str, mode: str, out: Path) -> None:
    """One measured run in this (fresh) interpreter; prints one JSON line."""
    import time

    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    os.environ["SPINEBENCH_REPO"] = str(hub)
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.custom.custom_model import CustomModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    from evaluation import images as item_images

    if mode == "eager":  # the behaviour before evaluation/images.py, for the side-by-side figure
        item_images.install = lambda ours: None
        item_images.doc_images = lambda value: [value.convert("RGB")]
    imported = time.perf_counter()
    pipeline = Pipeline(
        tasks=f"spinebench:{task}|0",
        pipeline_parameters=PipelineParameters(launcher_type=ParallelismManager.CUSTOM,
                                               custom_tasks_directory=str(TASK_FILE)),
        evaluation_tracker=EvaluationTracker(output_dir=str(out), save_details=False),
        model_config=CustomModelConfig(model_name="random", model_definition_file_path=str(MODEL_FILE),
                                       cache_dir=str(out / "cache")),
    )
    ready = time.perf_counter()
    pipeline.evaluate()
    evaluated = time.perf_counter()
    peak_evaluated = peak_rss_mb()
    pipeline.save_and_push_results()
    saved = time.perf_counter()
    results = pipeline.get_results()["results"]
    print(json.dumps({
        "mode": mode, "items": len(pipeline.get_details()[f"spinebench:{task}|0"]),
        "seconds": {"imports": round(imported - started, 2), "setup": round(ready - imported, 2),
                    "evaluate": round(evaluated - ready, 2), "save": round(saved - evaluated, 2)},
        "peak_mb_after_evaluate": peak_evaluated, "peak_mb": peak_rss_mb(),
        "scores": results[f"spinebench:{task}:0"] if f"spinebench:{task}:0" in results else results,
    }), flush=True)


def one_run(hub: Path, task: str, mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spinebench-eval.") as out:
        env = {**os.environ, **OFFLINE, "HF_HOME": str(Path(out) / "hf")}  # no shared datasets cache
        done = subprocess.run([sys.executable, "-m", "benchmarks.eval_bench", "--child", "--hub", str(hub),
                               "--task", task, "--mode", mode, "--run-dir", out], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"eval run ({mode}) failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = figures["seconds"]
    figures["run_s"] = round(seconds["setup"] + seconds["evaluate"] + seconds["save"], 2)
    figures["details_share"] = round(seconds["save"] / figures["run_s"], 3)
    return figures


def run(hub: Path, task: str = "mini", repeats: int = 3) -> dict[str, Any]:
    """Both modes in turn, `repeats` times (backwards in odd repeats); medians of each figure."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            runs[mode].append(one_run(hub, task, mode))
    result: dict[str, Any] = {"hub": str(hub), "task": task, "repeats": repeats}
    for mode, done in runs.items():
        result[mode] = {
            "items": done[0]["items"],
            "seconds": {key: statistics.median(r["seconds"][key] for r in done) for key in done[0]["seconds"]},
            "run_s": statistics.median(r["run_s"] for r in done),
            "details_share": statistics.median(r["details_share"] for r in done),
            "peak_mb": max(r["peak_mb"] for r in done),
            "peak_mb_after_evaluate": max(r["peak_mb_after_evaluate"] for r in done),
            "per_repeat": [{"run_s": r["run_s"], "save_s": r["seconds"]["save"], "peak_mb": r["peak_mb"]}
                           for r in done],
        }
    scores = [r["scores"] for done in runs.values() for r in done]
    result["identical_scores"] = all(s == scores[0] for s in scores)
    result["scores"] = scores[0]
    result["run_speedup"] = round(result["eager"]["run_s"] / result["encoded"]["run_s"], 2)
    result["save_speedup"] = round(result["eager"]["seconds"]["save"] / max(result["encoded"]["seconds"]["save"],
                                                                            0.01), 1)
    return result


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    encoded = result["encoded"]
    rows = [("eval_details_share", encoded["details_share"], "<=", TARGETS["details_share"]),
            ("eval_peak_mb", encoded["peak_mb"], "<=", TARGETS["peak_mb"]),
            ("eval_identical_scores", result["identical_scores"], "==", True)]
    return [{"name": name, "value": value, "target": f"{op} {target}",
             "met": value == target if op == "==" else value <= target} for name, value, op, target in rows]


def print_rows(result: dict[str, Any], quick: bool = False) -> None:
    encoded, eager = result["encoded"], result["eager"]
    print(f"evaluation, random baseline on {result['task']} ({encoded['items']} items, {result['repeats']} repeats,"
          f" medians):")
    for mode, row in (("project", encoded), ("before (eager images)", eager)):
        print(f"  {mode:22s} run {row['run_s']} s (set-up {row['seconds']['setup']}, evaluate "
              f"{row['seconds']['evaluate']}, details/save {row['seconds']['save']}: {row['details_share']:.1%}), "
              f"peak {row['peak_mb']} MB (after evaluate {row['peak_mb_after_evaluate']} MB)")
    print(f"  run {result['run_speedup']}x faster, save {result['save_speedup']}x; identical scores: "
          f"{result['identical_scores']}")
    for row in verdicts(result):
        verdict = "QUICK " if quick else ("MET   " if row["met"] else "MISSED")
        print(f"  {verdict} {row['name']}: {row['value']} (target {row['target']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub", type=Path, required=True, help="a built Hub folder (OUT/spinebench)")
    parser.add_argument("--task", default="mini", help="the SpineBench task (default: mini)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.hub.resolve(), args.task, args.mode, args.run_dir)
        return 0
    result = run(args.hub.resolve(), args.task, args.repeats)
    print_rows(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
