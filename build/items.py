"""Generate the benchmark's items from the ingested images: questions, hard-negative options, gold letters.

    python -m build items --work WORK [--profile P] [--embedder fallback|HUB_ID|PATH] [--review FILE]

One diagnosis (SDD) item per image; one localization (SLL) item per image with annotated levels. Options:
SDD = the truth, the most similar other diseases by image embedding, and Healthy; SLL = the five lumbar
levels. Letters are shuffled with a seeded, gold-balancing order; question wordings come from
configs/questions.yaml. Review decisions are applied, then the mini subset is chosen. Writes
WORK/qa.parquet (one row per item, every schema column but the pixels, plus provenance) and
WORK/items_report.json.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from build import artifacts, cells, config, decisions, distractors, subset
from build.errors import BuildError
from build.embedders import Embedder, EmbeddingCache, embed_with_cache, make_embedder
from build.options import arrange, seeded_rng
from build.report import StageReport
from spinebench import DISEASES, HEALTHY, LEVELS, QA, TASKS

COMMAND = "items"
HELP = "generate questions, options and gold answers, apply review decisions, choose the mini subset"
ITEMS_SETTINGS = "items_settings.json"  # what the card reports: embedder and distractor settings
DECISIONS = "review/decisions.jsonl"  # default decisions file inside the work folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", type=Path, required=True, help="work folder written by `ingest`")
    parser.add_argument("--profile", help="build profile (default: the one the work folder was ingested with)")
    parser.add_argument("--embedder", default="fallback",
                        help="'fallback' (deterministic, no weights) or a SigLIP2 Hub id / local path")
    parser.add_argument("--batch-size", type=config.positive, default=32, help="images per embedding batch")
    parser.add_argument("--device", default="cpu", help="torch device for a SigLIP2 embedder")
    parser.add_argument("--review", type=Path, help=f"review decisions (default: WORK/{DECISIONS} if present)")


def main(args: argparse.Namespace) -> int:
    if not (args.work / artifacts.PROFILE).is_file():
        raise BuildError(f"{args.work / artifacts.PROFILE} not found: run `python -m build ingest` first")
    ingested = artifacts.read_json(args.work / artifacts.PROFILE)["profile"]
    profile = config.profile(args.profile or ingested)
    if profile["name"] != ingested:
        print(f"note: labels were mapped with profile {ingested!r} at ingest; rerun ingest to change them")
    report = make_items(args.work, profile, args.embedder, args.batch_size, args.device,
                        review_file(args.work, args.review))
    tasks = report.counts["items"]
    print(report.summary(f"{tasks.get('diagnosis', 0)} diagnosis + {tasks.get('localization', 0)} localization"
                         f" items, mini {sum(report.counts['mini'].values())}"))
    return 0


def review_file(work: Path, given: Path | None) -> Path | None:
    """The decisions to apply: `given` (which must exist: a mistyped path would drop every decision
    silently), else WORK/review/decisions.jsonl if there is one."""
    if given is not None and not given.is_file():
        raise BuildError(f"review decisions {given} not found")
    default = work / DECISIONS
    return given or (default if default.exists() else None)


RECORD_COLUMNS = ["image_id", "source", "patient_id", "modality", "region", "view", "path", "frame", "disease",
                  "present", "levels", "severity", "shard", "sha256", "clarity", "contrast"]  # what items use


def make_items(work: Path, profile: dict[str, Any], embedder: str, batch_size: int, device: str,
               review: Path | None) -> StageReport:
    """Run the stage: checks its settings before any write, and replaces the previous items only when done."""
    check_settings(work, profile, batch_size)
    with artifacts.locked(work):
        artifacts.remove_stale_temps(work)
        stage = artifacts.Staging(work, COMMAND)
        report = _make_items(work, stage, profile, embedder, batch_size, device, review)
        stage.commit()
    return report


def check_settings(work: Path, profile: dict[str, Any], batch_size: int) -> None:
    config.load_all()
    config.check_profile(profile)
    if batch_size < 1:
        raise BuildError(f"batch size must be at least 1, not {batch_size}")
    if not (work / artifacts.RECORDS).is_file():
        raise BuildError(f"{work / artifacts.RECORDS} not found: run `python -m build ingest` first")


def _make_items(work: Path, stage: artifacts.Staging, profile: dict[str, Any], embedder: str, batch_size: int,
                device: str, review: Path | None) -> StageReport:
    report = StageReport("items")
    images = pq.read_table(work / artifacts.RECORDS, columns=RECORD_COLUMNS).to_pylist()
    seed, settings = profile["seed"], profile["items"]
    diseases = [image["disease"] for image in images]
    library = distractors.pick_library(diseases, settings["library_per_disease"], seed)
    scores, embedder_name = image_scores(work, images, library, settings["similarity"],
                                         make_embedder(embedder, batch_size=batch_size, device=device), batch_size)
    context = distractors.Context.from_images(diseases, [i["modality"] for i in images],
                                              [i["region"] for i in images])
    quality = subset.quality([i["clarity"] for i in images], [i["contrast"] for i in images],
                             [i["source"] for i in images])

    items = diagnosis_items(images, scores, context, settings, seed) + localization_items(images, seed)
    for item in items:
        item["quality"] = float(quality[item.pop("_index")])
    if review is not None:
        found = decisions.load(review, {item["id"]: item for item in items}, report)
        items = decisions.apply(items, found)
        report.count("review", "decisions", len(found))
        for decision in found.values():
            report.count("review", decision.decision)
    for item in items:
        item.setdefault("review", None)
    active = [item for item in items if item["review"] != "reject"]
    choose_mini(items, active, profile, report)
    count(active, context, report)
    cells.neutralise(items, QA_SCHEMA, report)
    artifacts.write_parquet(stage / QA, pa.Table.from_pylist(items, schema=QA_SCHEMA))
    artifacts.write_json(stage / ITEMS_SETTINGS, {"profile": profile["name"], "embedder": embedder_name,
                                                 "rsna_grades": profile["labels"]["rsna_grades"], **settings})
    report.finish()
    report.write(stage / "items_report.json")
    return report


def image_scores(work: Path, images: list[dict], library: dict[str, np.ndarray], how: str, embedder: Embedder,
                 batch_size: int) -> tuple[np.ndarray, str]:
    """Each image's similarity to every disease's library (images x DISEASES), and the embedder's name.

    Image shard by image shard, so only one shard's vectors and the library's are ever held: a first pass
    embeds each shard (or finds it in its cache file, WORK/embeddings/<embedder>/images-NNNNN.parquet) and
    keeps the library images' vectors; a second reads each shard's vectors back and scores them.
    """
    folder = work / "embeddings" / _safe(embedder.name)
    shards: dict[int, list[int]] = {}
    for row, image in enumerate(images):
        shards.setdefault(image["shard"], []).append(row)
    members = distractors.library_rows(library)
    library_vectors = np.empty((len(members), embedder.dim), dtype=np.float32)
    position = {int(row): index for index, row in enumerate(members)}
    for shard, rows in shards.items():
        vectors = shard_vectors(work, folder, shard, [images[row]["sha256"] for row in rows], embedder, batch_size)
        for local, row in enumerate(rows):
            if row in position:
                library_vectors[position[row]] = vectors[local]
    scores = np.empty((len(images), len(DISEASES)))
    for shard, rows in shards.items():
        found = _shard_cache(folder, shard, embedder).get_many(images[row]["sha256"] for row in rows)
        vectors = np.stack([found[images[row]["sha256"]] for row in rows])
        scores[rows] = distractors.disease_similarity(vectors, np.array(rows), library, library_vectors, how)
    return scores, embedder.name


def _shard_cache(folder: Path, shard: int, embedder: Embedder) -> EmbeddingCache:
    return EmbeddingCache(folder / f"{artifacts.shard_name(shard)}.parquet", embedder.name)


def shard_vectors(work: Path, folder: Path, shard: int, shas: list[str], embedder: Embedder, batch_size: int
                  ) -> np.ndarray:
    """The vectors of one image shard's images (rows in `shas` order), embedding only what its cache lacks."""
    cache = _shard_cache(folder, shard, embedder)
    rows: dict[str, list[int]] = {}
    for row, sha in enumerate(shas):
        rows.setdefault(sha, []).append(row)

    def pixels():  # a few rows at a time: whole shards of PNG bytes would fragment the heap for good
        images = pq.ParquetFile(work / artifacts.IMAGES_DIR / f"{artifacts.shard_name(shard)}.parquet")
        for batch in images.iter_batches(batch_size=64, columns=["sha256", "png"]):
            yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist())

    vectors = embed_with_cache(embedder, cache, pixels(), rows, batch_size)
    cache.save()
    return vectors


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def question_bank(task: str) -> list[dict[str, str]]:
    return config.load("questions")[task]


def assign_questions(count_: int, task: str, seed: int) -> list[dict[str, str]]:
    """Round-robin over a seeded order of the items: each wording used about equally often."""
    bank = question_bank(task)
    order = seeded_rng(seed, "questions", task).permutation(count_)
    chosen: list[dict[str, str]] = [{}] * count_
    for turn, index in enumerate(order):
        chosen[index] = bank[turn % len(bank)]
    return chosen


def base_item(image: dict, index: int, task: str, question: dict[str, str]) -> dict[str, Any]:
    keep = ("image_id", "disease", "levels", "source", "modality", "region", "view", "patient_id", "severity",
            "shard", "present", "clarity", "contrast")
    suffix = "sdd" if task == "diagnosis" else "sll"
    return {"id": f"{image['image_id']}-{suffix}", "task": task, "question": question["text"],
            "question_id": question["id"], "image_sha256": image["sha256"],
            "image_path": f"{image['source']}/{image['path']}", "image_frame": image["frame"], "_index": index,
            **{k: image[k] for k in keep}}


def diagnosis_items(images: list[dict], scores: np.ndarray, context: distractors.Context,
                    settings: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    questions = assign_questions(len(images), "diagnosis", seed)
    rng, used = seeded_rng(seed, "options", "diagnosis"), Counter()
    items = []
    for index, image in enumerate(images):
        truth = image["disease"]
        chosen = distractors.choose(truth, image["present"], scores[index], image["modality"], image["region"],
                                    context, settings["exclude_present"], settings["modality_aware"])
        texts = [truth] + chosen + ([HEALTHY] if truth != HEALTHY else [])
        options, answer = arrange(texts, {truth}, used, rng)
        item = base_item(image, index, "diagnosis", questions[index])
        item.update(options=options, answer=answer, answer_text=[truth],
                    scores=json.dumps({d: _score(scores[index], d) for d in options if d != HEALTHY}))
        items.append(item)
    return items


def _score(row: np.ndarray, disease: str) -> float | None:
    value = row[DISEASES.index(disease)]
    return None if np.isnan(value) else float(value)


def localization_items(images: list[dict], seed: int) -> list[dict[str, Any]]:
    located = [(index, image) for index, image in enumerate(images) if image["levels"]]
    questions = assign_questions(len(located), "localization", seed)
    rng, used = seeded_rng(seed, "options", "localization"), Counter()
    items = []
    for (index, image), question in zip(located, questions):
        options, answer = arrange(LEVELS, set(image["levels"]), used, rng)
        item = base_item(image, index, "localization", question)
        item.update(options=options, answer=answer, answer_text=[o for o in options if o in image["levels"]],
                    scores="{}")
        items.append(item)
    return items


def choose_mini(items: list[dict[str, Any]], active: list[dict[str, Any]], profile: dict[str, Any],
                report: StageReport) -> None:
    """Mark the mini subset in place, from the items not rejected; report quotas, results, shares."""
    for item in items:
        item["mini"] = False
    for task in TASKS:
        pool = [item for item in active if item["task"] == task]
        quota = profile["mini"][task]
        chosen, share = subset.select([i["id"] for i in pool], [i["disease"] for i in pool],
                                      [i["patient_id"] for i in pool], [i["quality"] for i in pool],
                                      quota, profile["seed"])
        picked = set(chosen)
        for item in pool:
            item["mini"] = item["id"] in picked
        report.count("mini", task, len(chosen))
        report.count("mini_quota", task, quota)
        if len(chosen) < quota:
            report.warn("all", task, f"mini {task}: {len(chosen)} of {quota} items; the data allow no more")
        for disease, n in share.items():
            report.count(f"mini/{task}", disease, n)


def count(items: list[dict[str, Any]], context: distractors.Context, report: StageReport) -> None:
    for item in items:
        task = item["task"]
        report.count("items", task)
        report.count(f"{task}/disease", item["disease"])
        report.count(f"{task}/source", item["source"])
        report.count(f"{task}/question", item["question_id"])
        for letter in item["answer"]:
            report.count(f"{task}/gold_letter", letter)
        if task == "diagnosis":
            ruled = any(context.ruled_out_by_modality(o, item["modality"]) for o in item["options"])
            report.count("diagnosis/modality_rule_out", "items with an option modality rules out", int(ruled))
            present = set(item["present"]) - {item["disease"]}
            report.count("diagnosis/present_offered", "items offering a disease the image shows",
                         int(bool(present & set(item["options"]))))


QA_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("image_id", pa.string()),
        ("question", pa.string()),
        ("options", pa.list_(pa.string())),
        ("answer", pa.list_(pa.string())),
        ("answer_text", pa.list_(pa.string())),
        ("disease", pa.string()),
        ("levels", pa.list_(pa.string())),
        ("source", pa.string()),
        ("modality", pa.string()),
        ("region", pa.string()),
        ("view", pa.string()),
        ("patient_id", pa.string()),
        ("severity", pa.string()),
        ("question_id", pa.string()),
        ("image_sha256", pa.string()),
        ("image_path", pa.string()),
        ("image_frame", pa.int32()),
        # provenance, not part of the public schema
        ("shard", pa.int32()),
        ("present", pa.list_(pa.string())),
        ("scores", pa.string()),  # JSON: similarity of the image to each offered disease's library
        ("clarity", pa.float64()),
        ("contrast", pa.float64()),
        ("quality", pa.float64()),
        ("mini", pa.bool_()),
        ("review", pa.string()),  # latest review decision, or null; `reject` rows are in no configuration
    ]
)
