"""Render dataset_card.md: its {{placeholders}} become tables computed from this build's items."""

from __future__ import annotations

from collections import Counter
from typing import Any

from build import audit, config, distractors
from spinebench import DISEASES, ROOT, TASKS

PLACEHOLDERS = ("headline", "audit", "counts", "prompt", "figures", "sources", "settings")


def render(qa: list[dict], build_info: dict[str, Any], figures: list[str]) -> str:
    text = (ROOT / "dataset_card.md").read_text(encoding="utf-8")
    parts = {"headline": headline(build_info), "audit": audit_section(build_info), "counts": counts(qa),
             "prompt": prompt(qa), "figures": figure_links(figures),
             "sources": sources(build_info) + completeness(build_info), "settings": settings(qa, build_info)}
    for name in PLACEHOLDERS:
        text = text.replace("{{" + name + "}}", parts[name])
    return text


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def headline(build_info: dict[str, Any]) -> str:
    """The card's first sentence: what this build is, and how much of it a model gets without the image."""
    items = build_info["items"]
    fallback = items["embedder"].startswith("fallback")
    text = (f"This build: profile `{build_info['profile']}`, hard negatives from `{items['embedder']}`"
            + (" (the weight-free stand-in, not SigLIP2: the options are not the paper's hard negatives)"
               if fallback else "") + "; ")
    found = items.get("audit")
    return text + (audit.headline_text(found) + "." if found else "the validity audit was not run.")


def audit_section(build_info: dict[str, Any]) -> str:
    found = build_info["items"].get("audit")
    return audit.markdown(found) if found else "Not measured for this build (built before the audit existed)."


def counts(qa: list[dict]) -> str:
    def n(task: str | None = None, mini: bool = False, disease: str | None = None) -> int:
        return sum(1 for i in qa if (task is None or i["task"] == task) and (not mini or i["mini"])
                   and (disease is None or i["disease"] == disease))

    configs = table(["configuration", "items", "diagnosis", "localization", "images"], [
        ["full", n(), n("diagnosis"), n("localization"), len({i["image_id"] for i in qa})],
        ["diagnosis", n("diagnosis"), n("diagnosis"), 0, n("diagnosis")],
        ["localization", n("localization"), 0, n("localization"), n("localization")],
        ["mini", n(mini=True), n("diagnosis", True), n("localization", True),
         len({i["image_id"] for i in qa if i["mini"]})],
    ])
    per_disease = table(["disease", "diagnosis", "diagnosis (mini)", "localization", "localization (mini)"], [
        [d, n("diagnosis", disease=d), n("diagnosis", True, d), n("localization", disease=d),
         n("localization", True, d)] for d in DISEASES
    ])
    return f"{configs}\n\n{per_disease}"


def prompt(qa: list[dict]) -> str:
    from evaluation.prompts import build_prompt

    examples = []
    for task in TASKS:
        item = next((i for i in qa if i["task"] == task), None)
        if item is not None:
            examples.append(f"{task}:\n\n```text\n{build_prompt(item)}\n```")
    return "\n\n".join(examples)


def figure_links(figures: list[str]) -> str:
    return "\n\n".join(f"![{path.rsplit('/', 1)[-1][:-4].replace('_', ' ')}]({path})" for path in figures)


def sources(build_info: dict[str, Any]) -> str:
    rows = []
    for name, entry in config.load("sources").items():
        shipped = "pointer (no pixels)" if name in build_info["pointer_sources"] else "embedded"
        rows.append([f"[{entry['name']}]({entry['url']})", entry["modality"], entry["licence"],
                     entry["redistribution"], shipped])
    return table(["source", "modality", "terms", "policy", "in this export"], rows)


def completeness(build_info: dict[str, Any]) -> str:
    """A loud line for every source far below its release's size or failed (from ingest's sources.json)."""
    lines = [f"- **WARNING: {name} is incomplete in this build**: {entry['found']:,} {entry['unit']} of the "
             f"{entry['expected']:,} its release holds" + (" (the source failed while read)" if entry["failed"] else "")
             for name, entry in sorted(build_info.get("sources", {}).items())
             if entry["far_below"] or entry["failed"]]
    return "\n\n" + "\n".join(lines) if lines else ""


def licence_text(build_info: dict[str, Any]) -> str:
    """LICENSE.md of the Hub folder: each source's terms bind the rows from that source."""
    return ("# Licences\n\nSpineBench's rows inherit the terms of the release each image comes from "
            "(column `source`). Using a row means accepting that release's terms.\n\n"
            + sources(build_info) + "\n\nThe questions, options and build code are the SpineBench project's own.\n")


def settings(qa: list[dict], build_info: dict[str, Any]) -> str:
    sdd = [i for i in qa if i["task"] == "diagnosis"]
    context = distractors.Context.from_images([i["disease"] for i in sdd], [i["modality"] for i in sdd],
                                              [i["region"] for i in sdd])
    ruled = sum(any(context.ruled_out_by_modality(o, i["modality"]) for o in i["options"]) for i in sdd)
    present = sum(bool((set(i["present"]) - {i["disease"]}) & set(i["options"])) for i in sdd)
    review = Counter(i["review"] or "not reviewed" for i in qa)
    items = build_info["items"]
    rows = [
        ["profile", f"`{build_info['profile']}` (seed {build_info['seed']})"],
        ["image long side cap", f"{build_info['imaging']['max_side']} px"],
        ["percentile window (no VOI in file)", f"{build_info['imaging']['percentile_window']}"],
        ["RSNA grades counted as lesions", ", ".join(str(g) for g in items["rsna_grades"])],
        ["embedder for hard negatives", f"`{items['embedder']}`"],
        ["similarity aggregate", f"{items['similarity']} over up to {items['library_per_disease']} images"],
        ["never offer a disease present in the image", items["exclude_present"]],
        ["prefer same modality and region", items["modality_aware"]],
        ["multi-lesion rule", items.get("labels", {}).get("multi_lesion", "priority")],
        ["option sets", items.get("option_sets", "nearest")
         + (f" (among the {items['candidates']} nearest)" if items.get("option_sets") == "balanced" else "")],
        ["answer cap per source and view (x the median answer)", items.get("class_cap") or "none"],
        ["mean similarity rank of the distractors (1 = nearest)",
         (items.get("audit") or {}).get("mean_distractor_similarity_rank", "-")],
        ["SDD items with an option that modality alone rules out", f"{ruled} of {len(sdd)}"],
        ["SDD items offering a disease the image also shows", f"{present} of {len(sdd)}"],
        ["review state", ", ".join(f"{k}: {v}" for k, v in sorted(review.items()))
         + f"; rejected and left out: {build_info['rejected_by_review']}"],
    ]
    return table(["setting", "value"], rows)
