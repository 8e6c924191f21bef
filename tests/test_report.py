"""The report (`python -m evaluation report`): its figures against a hand computation, its intervals, and the
whole path after a real `lighteval custom` run.

The hand case is tests/cases/report_details/: rows written by hand (dataset columns, reply, lighteval's
per-item figures), laid out here as lighteval saves details. Every expected number below was counted from
those rows on paper, never produced by the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from evaluation import report as rp
from evaluation.__main__ import main as evaluation_main
from evaluation.offline import make_lighteval_offline_safe
from evaluation.extract import reply_text
from evaluation.prompts import rotate
from hub_fixture import write_hub_folder

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "cases" / "report_details"
DATE, OLDER = "2025-02-01T00-00-00.000000", "2025-01-01T00-00-00.000000"
MODEL, NESTED = "hand-model", "org/hand-model"


def write_details(run_dir: Path, model: str, task: str, date: str, rows: list[dict],
                  finish_reasons: list[str] | None = None) -> None:
    """One details Parquet in lighteval 0.13's layout: doc.specific, model_response.text, metric (and the
    endpoint model's model_response.finish_reason when given)."""
    folder = run_dir / "details" / model / date
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        {
            "doc": {"query": "(prompt)", "specific": row["specific"]},
            "metric": row["metric"],
            "model_response": {"text": [row["reply"]], "text_post_processed": None,
                               **({"finish_reason": finish_reasons[index]} if finish_reasons else {})},
        }
        for index, row in enumerate(rows)
    ]
    pq.write_table(pa.Table.from_pylist(records), folder / f"details_{task}_{date}.parquet")


def hand_rows() -> tuple[list[dict], list[dict]]:
    mini = json.loads((CASES / "mini.json").read_text())["rows"]
    by_id = {row["specific"]["id"]: row["specific"] for row in mini}
    circular = [
        {**row, "specific": {**rotate(by_id[row["id"]], row["rotation"]), "rotation": row["rotation"]}}
        for row in json.loads((CASES / "mini_circular.json").read_text())["rows"]
    ]
    return mini, circular


@pytest.fixture
def hand_run(tmp_path) -> Path:
    """hand-model: mini, mini_circular and an older partial run; org/hand-model: mini only."""
    mini, circular = hand_rows()
    run_dir = tmp_path / "run"
    write_details(run_dir, MODEL, "spinebench:mini|0", OLDER, mini[:2])
    write_details(run_dir, MODEL, "spinebench:mini|0", DATE, mini)
    write_details(run_dir, MODEL, "spinebench:mini_circular|0", DATE, circular)
    write_details(run_dir, NESTED, "spinebench:mini|0", DATE, mini)
    return run_dir


@pytest.fixture
def hand_report(hand_run) -> dict:
    return rp.build_report(hand_run, "spinebench:mini")


def assert_figures(got: dict, expected: dict) -> None:
    """`got` maps keys to report estimates, `expected` the same keys to (value, n)."""
    assert set(got) == set(expected)
    for key, (value, n) in expected.items():
        assert (got[key]["value"], got[key]["n"]) == (pytest.approx(value), n), key


def test_table_matches_hand_computation(hand_report):
    # SDD correct: sdd-1, sdd-5, sdd-6 of 6 -> 3/6. SLL exact: sll-1 of 4 -> 1/4.
    # SLL precision per item 1, 1/2, 0, 0 (unparsed) -> 1.5/4; recall 1, 1, 0, 0 -> 2/4.
    # Overall = (1/2 + 1/4) / 2, the macro mean of the two accuracies.
    summary = hand_report["models"][MODEL]
    assert_figures(summary["table"], {
        "sdd_acc": (0.5, 6), "sll_acc": (0.25, 4), "sll_pre": (0.375, 4), "sll_recall": (0.5, 4),
        "overall": (0.375, 10),
    })
    # patients: vindr/p1 (sdd-1, sdd-2), csxa/p1 (sdd-4: same id, other release), buu/p2 (sdd-3, sll-4),
    # rsna/p4 (sdd-5, sll-1), csxa/p5 (sdd-6), rsna/p6 (sll-2, sll-3)
    assert (summary["items"], summary["patients"]) == (10, 6)
    assert summary["details"] == f"details/{MODEL}/{DATE}/details_spinebench:mini|0_{DATE}.parquet"


def test_parse_failures_letters_and_confusion(hand_report):
    summary = hand_report["models"][MODEL]
    # unparsed: sdd-3 ("I cannot tell ...") and sll-4 ("No idea, sorry.")
    assert summary["parse_failures"] == {
        "diagnosis": {"rate": pytest.approx(1 / 6), "failed": 1, "n": 6},
        "localization": {"rate": 0.25, "failed": 1, "n": 4},
    }
    assert summary["parse_mismatches"] == 0
    # SDD gold B A C B E A; answered B C - A E A.  SLL gold DE B CD C; answered DE BC A -.
    assert summary["letters"] == {
        "diagnosis": {"gold": {"A": 2, "B": 2, "C": 1, "D": 0, "E": 1},
                      "predicted": {"A": 2, "B": 1, "C": 1, "D": 0, "E": 1, "unparsed": 1}},
        "localization": {"gold": {"A": 0, "B": 1, "C": 2, "D": 2, "E": 1},
                         "predicted": {"A": 1, "B": 1, "C": 1, "D": 1, "E": 1, "unparsed": 1}},
    }
    # the answered letter read back as its option text
    assert summary["sdd_confusion"] == {
        "Osteophytes": {"Osteophytes": 1},
        "Spinal canal stenosis": {"Spinal canal stenosis": 1},
        "Spondylolisthesis": {"unparsed": 1},
        "Cervical kyphosis": {"Cervical kyphosis": 1, "Healthy": 1},
        "Healthy": {"Vertebral collapse": 1},
    }


def test_breakdowns_match_hand_computation(hand_report):
    breakdowns = hand_report["models"][MODEL]["breakdowns"]
    expected = {  # (task, group) -> (accuracy, n), counted from the rows
        "disease": {
            ("diagnosis", "Cervical kyphosis"): (0.5, 2), ("diagnosis", "Healthy"): (0.0, 1),
            ("diagnosis", "Osteophytes"): (1.0, 1), ("diagnosis", "Spinal canal stenosis"): (1.0, 1),
            ("diagnosis", "Spondylolisthesis"): (0.0, 1), ("localization", "Foraminal stenosis"): (0.0, 1),
            ("localization", "Spinal canal stenosis"): (1.0, 1),
            ("localization", "Spondylolisthesis"): (0.0, 1),
            ("localization", "Subarticular stenosis"): (0.0, 1),
        },
        "modality": {
            ("diagnosis", "MRI"): (1.0, 1), ("diagnosis", "X-ray"): (0.4, 5),
            ("localization", "MRI"): (1 / 3, 3), ("localization", "X-ray"): (0.0, 1),
        },
        "source": {
            ("diagnosis", "buu"): (0.0, 1), ("diagnosis", "csxa"): (0.5, 2), ("diagnosis", "rsna"): (1.0, 1),
            ("diagnosis", "vindr"): (0.5, 2),
            ("localization", "buu"): (0.0, 1), ("localization", "rsna"): (1 / 3, 3),
        },
        "question_id": {
            ("diagnosis", "sdd-q0"): (0.75, 4), ("diagnosis", "sdd-q1"): (0.0, 2),
            ("localization", "sll-q0"): (1 / 3, 3), ("localization", "sll-q1"): (0.0, 1),
        },
    }
    for facet, figures in expected.items():
        assert_figures({(row["task"], row["group"]): row for row in breakdowns[facet]}, figures)


def test_circular_accuracy(hand_report):
    # sdd-1 is right in all five rotations; sll-1 answers [E] for gold [A, E] in rotation 4
    assert_figures(hand_report["models"][MODEL]["circular"], {"sdd_acc": (1.0, 1), "sll_acc": (0.0, 1)})
    assert hand_report["models"][NESTED]["circular"] is None


def test_several_models_newest_run(hand_report):
    """Both models are found, `org/name` included, and the older partial run is ignored."""
    models = hand_report["models"]
    assert list(models) == [MODEL, NESTED]
    assert models[NESTED]["table"] == models[MODEL]["table"]


def test_intervals_contain_the_point_and_are_deterministic(hand_run, hand_report):
    estimates = [*hand_report["models"][MODEL]["table"].values()]
    estimates += [row for rows in hand_report["models"][MODEL]["breakdowns"].values() for row in rows]
    for figure in estimates:
        if figure["lo"] is None:  # one patient with mixed items: nothing to resample
            assert figure["interval"] == "n too small", figure
            continue
        assert figure["lo"] <= figure["value"] <= figure["hi"], figure
        assert figure["lo"] < figure["hi"], figure  # never [x, x]
    assert rp.build_report(hand_run, "spinebench:mini") == hand_report
    table = hand_report["models"][MODEL]["table"]
    assert table["sdd_acc"]["lo"] < table["sdd_acc"]["hi"]  # the resamples do vary
    other_seed = rp.build_report(hand_run, "spinebench:mini", seed=1)["models"][MODEL]["table"]
    values = {name: figure["value"] for name, figure in table.items()}
    assert {name: figure["value"] for name, figure in other_seed.items()} == values


def test_bootstrap_resamples_patients_not_items():
    """Copying each patient's item changes nothing; taking the copies as independent narrows the interval."""
    values = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], dtype=float)
    patients = [f"p{i}" for i in range(len(values))]
    everything = np.ones((1, len(values) * 5), dtype=bool)
    single = rp.ClusterBootstrap(patients, resamples=500, seed=3).draws(values, everything[:, : len(values)])
    copies = rp.ClusterBootstrap(patients * 5, resamples=500, seed=3).draws(np.tile(values, 5), everything)
    np.testing.assert_allclose(copies, single)
    independent = rp.ClusterBootstrap([f"i{i}" for i in range(50)], resamples=500, seed=3)
    width = np.ptp(np.percentile(single, [2.5, 97.5]))
    assert np.ptp(np.percentile(independent.draws(np.tile(values, 5), everything), [2.5, 97.5])) < width


def test_one_patient_gives_no_interval_rather_than_a_point():
    bootstrap = rp.ClusterBootstrap(["p"] * 4, resamples=100)
    assert bootstrap.means(np.array([1.0, 0.0, 0.0, 1.0]), np.array([[True, True, True, True]])) == [
        {"value": 0.5, "lo": None, "hi": None, "n": 4, "interval": "n too small"}]


def test_subgroup_where_every_item_agrees_gets_a_wilson_interval_over_patients():
    """3 of 3 patients right (6 items): Wilson 95% for 3/3 is [0.4385, 1]; 0 of 1 is [0, 0.7935]."""
    bootstrap = rp.ClusterBootstrap(["a", "a", "b", "b", "c", "d"], resamples=200)
    values = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    masks = np.array([[True] * 5 + [False], [False] * 5 + [True]])
    right, wrong = bootstrap.means(values, masks)
    assert (right["lo"], right["hi"], right["interval"], right["n"]) == (
        pytest.approx(0.43850, abs=1e-4), 1.0, "wilson", 5)
    assert (wrong["lo"], wrong["hi"]) == (0.0, pytest.approx(0.79346, abs=1e-4))
    assert rp._with_ci(right) == "100.00 [43.85, 100.00] W"


def test_bare_string_reply():
    """lighteval's VLM backend saves the reply as one string, post-processed into characters."""
    assert reply_text("My final option: [B]") == "My final option: [B]"
    assert reply_text(["<think>x</think>raw"]) == "<think>x</think>raw"  # extract.py strips reasoning itself
    assert reply_text([]) == ""


def test_paper_rows_are_the_papers_table():
    """Overall is the mean of SDD and SLL accuracy in every row but the one the paper got wrong."""
    paper = yaml.safe_load(rp.PAPER_RESULTS.read_text())
    assert len(paper["rows"]) == 13 and "SpineBench-Sub" in paper["reported_on"]
    for row in paper["rows"][1:]:
        mean = (row["sdd_acc"] + row["sll_acc"]) / 2
        assert (abs(mean - row["overall"]) <= 0.0051) != ("note" in row), row["model"]


def test_command_writes_the_report_and_prints_the_table(hand_run, tmp_path, capsys):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert evaluation_main(["report", str(hand_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"| {MODEL} | 50.00 [" in printed and "| Gemini-2.5-pro-exp-03-25 † | 32.37 |" in printed
    files = sorted(path.relative_to(outs[0]).as_posix() for path in outs[0].rglob("*") if path.is_file())
    assert files == [
        "figures/hand-model_disease_accuracy.png", "figures/hand-model_sdd_confusion.png",
        "figures/org_hand-model_disease_accuracy.png", "figures/org_hand-model_sdd_confusion.png",
        "report.json", "report.md",
    ]
    for name in files:  # byte for byte, figures included
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    text = (outs[0] / "report.md").read_text()
    for section in ("## Parse failures", "## Gold and predicted letters", "## Circular accuracy",
                    "### By disease", "### By question_id", "](figures/hand-model_sdd_confusion.png)"):
        assert section in text
    missing = ["report", str(hand_run), "--out", str(tmp_path / "c"), "--task", "spinebench:full"]
    assert evaluation_main(missing) == 1


def test_end_to_end_after_lighteval_custom(tmp_path):
    """always-A on the Hub fixture's mini via the real CLI: SDD accuracy = the share of gold-A SDD items."""
    make_lighteval_offline_safe()
    hub = write_hub_folder(tmp_path / "hub")
    run_dir = tmp_path / "run"
    command = [
        str(Path(sys.executable).with_name("lighteval")), "custom", "always-a",
        str(ROOT / "evaluation" / "baselines.py"), "spinebench:mini|0,spinebench:mini_circular|0",
        "--custom-tasks", str(ROOT / "evaluation" / "spinebench_tasks.py"),
        "--output-dir", str(run_dir), "--save-details",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HOME": str(tmp_path), "HF_HOME": str(tmp_path), "SPINEBENCH_REPO": str(hub)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "report"
    shown = subprocess.run([sys.executable, "-m", "evaluation", "report", str(run_dir), "--out", str(out)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    summary = report["models"]["always-a"]

    items = datasets.load_dataset(str(hub), "mini", split="test").remove_columns("image").to_list()
    sdd = [item["answer"] == ["A"] for item in items if item["task"] == "diagnosis"]
    assert summary["table"]["sdd_acc"]["value"] == pytest.approx(sum(sdd) / len(sdd))
    assert summary["table"]["sdd_acc"]["n"] == len(sdd)
    assert summary["letters"]["diagnosis"]["predicted"]["A"] == len(sdd)
    assert summary["circular"]["sdd_acc"]["value"] == 0.0  # A is right in one rotation of five, never all
    (results_file,) = (run_dir / "results" / "always-a").glob("results_*.json")
    lighteval = json.loads(results_file.read_text())["results"]["spinebench:mini|0"]
    for name, metric in {"sdd_acc": "acc_dis", "sll_acc": "acc_loc", "sll_pre": "pre_loc",
                         "sll_recall": "recall_loc"}.items():
        assert summary["table"][name]["value"] == pytest.approx(lighteval[metric]), name
    assert f"| always-a | {100 * sum(sdd) / len(sdd):.2f} [" in shown.stdout


def test_the_builds_audit_appears_as_baseline_rows(tmp_path):
    from build import audit as build_audit
    from spinebench import BUILD_INFO

    items = [{"id": f"{n}", "task": "diagnosis", "options": ["Osteophytes", "Healthy", "Disc space narrowing",
              "Vertebral collapse", "Spondylolisthesis"], "answer_text": ["Osteophytes"], "answer": ["A"],
              "disease": "Osteophytes", "source": "vindr", "patient_id": f"p{n}", "modality": "X-ray",
              "region": "lumbar", "view": "AP", "question_id": "q", "mini": True} for n in range(40)]
    found = build_audit.audit(items, seed=0)
    (tmp_path / BUILD_INFO).write_text(json.dumps({"items": {"audit": found}}))
    rows = rp.audit_baselines(tmp_path, "spinebench:mini|0")
    assert rows["config"] == "mini" and ["always Healthy", "0.0", "-"] in rows["rows"]
    assert ["text-only: option-set prior", "100.0", "-"] in rows["rows"]  # one gold, always: learned
    text = "\n".join(rp.audit_lines(rows))
    assert "| text-only: option-set prior | 100.0 | - |" in text
    assert rp.audit_baselines(tmp_path / "missing", "spinebench:mini") is None


def test_runs_show_the_prompt_and_the_share_cut_by_the_budget(tmp_path):
    mini, _ = hand_rows()
    rows = [{**row, "specific": {**row["specific"], "prompt": "paper"}} for row in mini]
    finish = ["stop", "length", "failed", "stop", "stop", "stop", "length", "stop", "stop", "stop"]
    write_details(tmp_path / "run", "endpoint", "spinebench:mini|0", DATE, rows, finish)
    write_details(tmp_path / "run", MODEL, "spinebench:mini|0", DATE, mini)  # saved before prompts were
    report = rp.build_report(tmp_path / "run", "spinebench:mini")
    endpoint, local = report["models"]["endpoint"], report["models"][MODEL]
    # 10 finish reasons known, 1 request failed, 2 of the 9 replies received were cut
    assert endpoint["budget"] == {
        "known": 10, "received": 9, "cut": 2, "failed": 1, "cut_rate": pytest.approx(2 / 9)}
    assert (endpoint["prompts"], local["prompts"]) == (["paper"], ["unrecorded"])
    assert local["budget"]["known"] == 0
    text = rp.markdown(report, [])
    assert "| endpoint | paper | 10 | 2 of 9 (22.22%) | 1 |" in text
    assert f"| {MODEL} | unrecorded | 10 | not saved | not saved |" in text


def test_baseline_rows_appear_beside_the_models(hand_run, tmp_path):
    baselines = tmp_path / "baselines.yaml"
    baselines.write_text(yaml.safe_dump({"source": "validity audit, items_report.json", "rows": [
        {"model": "text-only attack", "sdd_acc": 0.82, "sll_acc": 0.1, "note": "option-set prior"},
        {"name": "always all five levels", "sll_acc": 0.335, "sll_pre": 0.4, "sll_recall": 1.0},
    ]}))
    report = rp.build_report(hand_run, "spinebench:mini", baselines=baselines)
    text = rp.headline(report)
    assert "| text-only attack ‡ | 82.00 | 10.00 | - | - | 46.00 |" in text  # Overall = (82 + 10) / 2
    assert "| always all five levels ‡ | - | 33.50 | 40.00 | 100.00 | - |" in text
    assert text.index("| org/hand-model |") < text.index("text-only attack ‡") < text.index("Random †")
    assert "validity audit, items_report.json" in text and "option-set prior" in text


@pytest.mark.parametrize("content, reason", [("rows: 3\n", "expected a list"),
                                             ("- {model: x, sdd_acc: 82}\n", "less than or equal to 1"),
                                             ("- {sdd_acc: 0.2}\n", "model")])
def test_bad_baselines_file_is_named_and_nothing_is_written(hand_run, tmp_path, capsys, content, reason):
    bad = tmp_path / "baselines.yaml"
    bad.write_text(content)
    command = ["report", str(hand_run), "--out", str(tmp_path / "r"), "--baselines", str(bad)]
    assert evaluation_main(command) == 1
    error = capsys.readouterr().err
    assert str(bad) in error and reason in error and not (tmp_path / "r").exists()
