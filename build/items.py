"""Generate the benchmark's items from the ingested images: questions, hard-negative options, gold letters.

    python -m build items --work WORK [--profile P] [--embedder fallback|HUB_ID|PATH] [--review FILE]

One diagnosis (SDD) item per image; one localization (SLL) item per image with annotated levels. Options:
SDD = the truth, the most similar other diseases by image embedding, and Healthy; SLL = the five lumbar
levels. Letters are shuffled with a seeded, gold-balancing order; question wordings come from
configs/questions.yaml. Review decisions are applied, then the mini subset is chosen, and the validity
audit (build/audit.py: what a model gets without the image) is run on the result. Writes WORK/qa.parquet
(one row per item, every schema column but the pixels, plus provenance) and WORK/items_report.json (counts
and the audit; the audit also goes to items_settings.json, which export hands to the card).
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

from build import artifacts, audit, cells, config, decisions, distractors, labels, subset
from build.embedders import Embedder, EmbeddingCache, embed_with_cache, embedding_progress, make_embedder
from build.errors import BuildError
from build.options import arrange, seeded_rng
from build.records import slug
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
    parser.add_argument("--batch-size", type=config.positive,
                        help="images per embedding batch (default: 32 on CPU, 256 on a CUDA device)")
    parser.add_argument("--device", default="cpu", help="torch device for a SigLIP2 embedder")
    parser.add_argument("--review", type=Path, help=f"review decisions (default: WORK/{DECISIONS} if present)")


def main(args: argparse.Namespace) -> int:
    if not (args.work / artifacts.PROFILE).is_file():
        raise BuildError(f"{args.work / artifacts.PROFILE} not found: run `python -m build ingest` first")
    ingested = artifacts.read_json(args.work / artifacts.PROFILE)["profile"]
    profile = config.profile(args.profile or ingested)
    if profile["name"] != ingested:
        differs = [key for key in INGEST_SECTIONS if profile[key] != config.profile(ingested)[key]]
        if differs:
            raise BuildError(f"{args.work} was ingested with profile {ingested!r}, whose {' and '.join(differs)} "
                             f"settings differ from {profile['name']!r}'s: rerun ingest with --profile "
                             f"{profile['name']} (or items with --profile {ingested})")
        print(f"note: labels were mapped with profile {ingested!r} at ingest (same label and imaging settings)")
    report = make_items(args.work, profile, args.embedder, args.batch_size, args.device,
                        review_file(args.work, args.review))
    tasks = report.counts.get("items", {})
    print(report.summary(f"{tasks.get('diagnosis', 0)} diagnosis + {tasks.get('localization', 0)} localization"
                         f" items, mini {sum(report.counts.get('mini', {}).values())}"))
    return 0


def review_file(work: Path, given: Path | None) -> Path | None:
    """The decisions to apply: `given` (which must exist: a mistyped path would drop every decision
    silently), else WORK/review/decisions.jsonl if there is one."""
    if given is not None and not given.is_file():
        raise BuildError(f"review decisions {given} not found")
    default = work / DECISIONS
    return given or (default if default.exists() else None)


INGEST_SECTIONS = ("imaging", "labels")  # profile sections ingest applies: items cannot change them afterwards


class ItemsReport(StageReport):
    """The stage report plus the validity audit, in one items_report.json."""

    audit: dict[str, Any] | None = None

    def to_dict(self) -> dict:
        return {**super().to_dict(), "audit": self.audit}


RECORD_COLUMNS = ["image_id", "source", "patient_id", "modality", "region", "view", "path", "frame", "disease",
                  "present", "levels", "severity", "shard", "sha256", "clarity", "contrast",
                  "findings"]  # what items use


def make_items(work: Path, profile: dict[str, Any], embedder: str, batch_size: int | None, device: str,
               review: Path | None) -> StageReport:
    """Run the stage: checks its settings before any write, and replaces the previous items only when done."""
    check_settings(work, profile, batch_size)
    with artifacts.locked(work):
        artifacts.remove_stale_temps(work)
        stage = artifacts.Staging(work, COMMAND)
        report = _make_items(work, stage, profile, embedder, batch_size, device, review)
        stage.commit()
    return report


def check_settings(work: Path, profile: dict[str, Any], batch_size: int | None) -> None:
    config.load_all()
    config.check_profile(profile)
    if batch_size is not None and batch_size < 1:
        raise BuildError(f"batch size must be at least 1, not {batch_size}")
    if not (work / artifacts.RECORDS).is_file():
        raise BuildError(f"{work / artifacts.RECORDS} not found: run `python -m build ingest` first")


def _make_items(work: Path, stage: artifacts.Staging, profile: dict[str, Any], embedder: str, batch_size: int | None,
                device: str, review: Path | None) -> StageReport:
    report = ItemsReport("items")
    images = pq.read_table(work / artifacts.RECORDS, columns=RECORD_COLUMNS).to_pylist()
    seed, settings = profile["seed"], profile["items"]
    study_views = profile["labels"].get("rsna_study_grades_on", [])
    if study_views:
        report.count("labels", "RSNA slices relabelled from their study's grades",
                     labels.relabel_by_study(images, labels.LabelMap.from_config(profile), study_views))
    diseases = [image["disease"] for image in images]
    library = distractors.pick_library(diseases, settings["library_per_disease"], seed)
    model = make_embedder(embedder, batch_size=batch_size, device=device)  # None: the device's default batch
    with embedding_progress(total=len(images)):
        scores, embedder_name = image_scores(work, images, library, settings["similarity"], model,
                                             batch_size or model.batch_size)
    context = distractors.Context.from_images(diseases, [i["modality"] for i in images],
                                              [i["region"] for i in images])
    quality = subset.quality([i["clarity"] for i in images], [i["contrast"] for i in images],
                             [i["source"] for i in images])

    per_lesion = profile["labels"].get("multi_lesion") == "per_lesion"
    sdd, ranks = diagnosis_items(images, scores, context, settings, seed, per_lesion)
    items = sdd + localization_items(images, seed)
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
    reviewed = report.counts.get("review", Counter())["decisions"]  # push refuses a build never reviewed
    report.audit = audit.audit(active, seed, distractor_rank=round(float(np.mean(ranks)), 3) if ranks else None)
    cells.neutralise(items, QA_SCHEMA, report)
    artifacts.write_parquet(stage / QA, pa.Table.from_pylist(items, schema=QA_SCHEMA))
    artifacts.write_json(stage / ITEMS_SETTINGS, {"profile": profile["name"], "embedder": embedder_name,
                                                  "rsna_grades": profile["labels"]["rsna_grades"],
                                                  "labels": profile["labels"], "mini_settings": profile["mini"],
                                                  "review_decisions": reviewed,
                                                  **settings, "audit": report.audit})
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


def diagnosis_targets(images: list[dict], per_lesion: bool, class_cap: float | None, seed: int,
                      views_without_sdd: dict[str, list[str]], single_lesion: bool = False
                      ) -> list[tuple[int, str]]:
    """(image index, truth) of each SDD item: one per image, or one per disease present (`per_lesion`);
    none for the views `views_without_sdd` names per source (they still carry their SLL item), nor, with
    `single_lesion`, for an image showing several diseases.

    With `class_cap`, no answer (Healthy included) keeps more than that multiple of the median disease's
    count within its (source, view) (a seeded choice of which): otherwise the answer most often seen with
    that view is what recognising the view earns.
    """
    targets = []
    for index, image in enumerate(images):
        if image["view"] in views_without_sdd.get(image["source"], ()):
            continue
        if single_lesion and len(set(image["present"]) - {HEALTHY}) > 1:
            continue  # every option the image shows would be a second right answer, or missing tells
        targets.append((index, image["disease"]))
        if per_lesion:
            targets += [(index, d) for d in image["present"] if d not in (image["disease"], HEALTHY)]
    if not class_cap:
        return targets
    cell = lambda target: (images[target[0]]["source"], images[target[0]]["view"])  # noqa: E731
    sizes: dict[tuple, Counter] = {}
    for target in targets:
        sizes.setdefault(cell(target), Counter())[target[1]] += 1
    cap = {where: max(1, round(class_cap * float(np.median([v for d, v in n.items() if d != HEALTHY]
                                                             or list(n.values())))))
           for where, n in sizes.items()}
    kept, taken = set(), Counter()
    for target in sorted(targets, key=lambda t: subset.tiebreak(f"{images[t[0]]['image_id']}:{t[1]}", seed)):
        if taken[cell(target), target[1]] < cap[cell(target)]:
            taken[cell(target), target[1]] += 1
            kept.add(target)
    return [t for t in targets if t in kept]


def diagnosis_items(images: list[dict], scores: np.ndarray, context: distractors.Context,
                    settings: dict[str, Any], seed: int, per_lesion: bool = False
                    ) -> tuple[list[dict[str, Any]], list[int]]:
    """The SDD items, and the similarity rank of every distractor offered (see distractors.similarity_ranks)."""
    targets = diagnosis_targets(images, per_lesion, settings.get("class_cap"), seed,
                                settings.get("diagnosis_skips_views", {}),
                                settings.get("diagnosis_single_lesion", False))
    questions = assign_questions(len(targets), "diagnosis", seed)
    rng, used = seeded_rng(seed, "options", "diagnosis"), Counter()
    balancer = (distractors.SetBalancer(settings.get("candidates", 6))
                if settings.get("option_sets", "nearest") == "balanced" else None)
    own: dict[str, set[str]] = {}
    for image in images:
        own.setdefault(image["source"], set()).add(image["disease"])
    items, ranks = [], []
    for (index, truth), question in zip(targets, questions):
        image = images[index]
        ranked = distractors.ranked(truth, image["present"], scores[index], image["modality"], image["region"],
                                    context, settings["exclude_present"], settings["modality_aware"])
        chosen = (balancer.choose(truth, ranked, frozenset(own[image["source"]])) if balancer
                  else ranked[:distractors.wanted(truth)])
        ranks += distractors.similarity_ranks(truth, chosen, scores[index])
        texts = [truth] + chosen + ([HEALTHY] if truth != HEALTHY else [])
        options, answer = arrange(texts, {truth}, used, rng)
        item = base_item(image, index, "diagnosis", question)
        if truth != image["disease"]:  # a second lesion of the image: its own item
            item.update(id=f"{item['id']}-{slug(truth)}", disease=truth, levels=[])
        item.update(options=options, answer=answer, answer_text=[truth],
                    scores=json.dumps({d: _score(scores[index], d) for d in options if d != HEALTHY}))
        items.append(item)
    return items, ranks


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
    taken: set[str] = set()  # images already in the other task's mini: used again only when nothing else is left
    for task in sorted(TASKS, key=lambda t: profile["mini"][t]):  # the smaller quota (SLL) chooses first
        pool = [item for item in active if item["task"] == task]
        quota = profile["mini"][task]
        balance = profile["mini"].get(f"balance_{task}", ["disease"])
        chosen, share = subset.select([i["id"] for i in pool], [mini_group(i, balance) for i in pool],
                                      [i["patient_id"] for i in pool], [i["quality"] for i in pool],
                                      quota, profile["seed"], avoid=[i["image_id"] in taken for i in pool],
                                      max_share=profile["mini"].get(f"max_share_{task}"))
        picked = set(chosen)
        for item in pool:
            item["mini"] = item["id"] in picked
        shared = taken & {item["image_id"] for item in pool if item["mini"]}
        taken |= {item["image_id"] for item in pool if item["mini"]}
        report.count("mini", task, len(chosen))
        report.count("mini_quota", task, quota)
        if len(chosen) < quota:
            report.warn("all", task, f"mini {task}: {len(chosen)} of {quota} items; the data allow no more")
        for group, n in share.items():
            report.count(f"mini/{task}", group, n)
    report.count("mini_images", "in both tasks", len(shared))


def mini_group(item: dict[str, Any], keys: list[str]) -> str:
    """The balance cell of an item for the mini subset, e.g. "rsna / Axial T2 / Healthy" or "L4/L5 L5/S1"."""
    return " / ".join(" ".join(item[k]) if isinstance(item[k], list) else str(item[k]) for k in keys)


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
