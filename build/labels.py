"""The label map: a reader's raw labels -> one SpineBench disease per image, its levels and grade.

All label policy lives in configs/labels.yaml (which raw string means which disease, what is dropped and
why, the priority of diseases on a multi-lesion image) and in the profile's `labels` section (which RSNA
grades count as a lesion, whether a graded-normal RSNA slice is a Healthy image, and the multi-lesion rule).
This module only applies it, so later stages never see a raw label.

Multi-lesion rules (`labels.multi_lesion`): `priority` takes the first disease of configs/labels.yaml's
list; `most_boxes` the disease with the most annotations on the image (VinDr: boxes), ties by priority;
`per_lesion` labels like `priority` and tells items to make one diagnosis item per disease present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from build import config
from build.records import SourceRecord
from spinebench import DISEASES, HEALTHY, LEVELS

DROP_PREFIX = "drop:"
GRADE_ORDER = ("Normal/Mild", "Moderate", "Severe")
NORMAL = GRADE_ORDER[0]
MULTI_LESION_RULES = ("priority", "most_boxes", "per_lesion")


@dataclass(frozen=True)
class Labelled:
    """The benchmark's view of one image."""

    disease: str  # the SDD answer
    present: tuple[str, ...]  # every disease the image shows (disease included), in DISEASES order
    levels: tuple[str, ...]  # annotated levels of `disease`, in LEVELS order (the SLL gold set)
    severity: str | None  # the worst grade among those levels (RSNA), else None


@dataclass(frozen=True)
class Dropped:
    """An image the policy leaves out, with the reason for the report."""

    reason: str


@dataclass(frozen=True)
class LabelMap:
    raw_to_disease: Mapping[str, Mapping[str, str]]  # source -> raw label -> disease or "drop: reason"
    priority: tuple[str, ...]  # which disease is the SDD answer when an image shows several
    accepted_grades: frozenset[str | None]  # RSNA grades that make a finding count
    multi_lesion: str = "priority"  # one of MULTI_LESION_RULES
    normal_as_healthy: bool = False  # an RSNA slice whose every annotated level is graded Normal/Mild: Healthy

    @classmethod
    def from_config(cls, profile: Mapping[str, Any]) -> LabelMap:
        labels = config.load("labels")
        unknown = {
            target
            for mapping in labels["sources"].values()
            for target in mapping.values()
            if not target.startswith(DROP_PREFIX) and target not in DISEASES
        }
        if unknown:
            raise ValueError(f"configs/labels.yaml maps to diseases not in the vocabulary: {sorted(unknown)}")
        rest = [d for d in DISEASES if d not in labels["primary_priority"]]
        rule = profile["labels"].get("multi_lesion", "priority")
        if rule not in MULTI_LESION_RULES:
            raise SystemExit(f"configs/profiles.yaml: labels.multi_lesion {rule!r} of profile "
                             f"{profile.get('name')!r} must be one of {', '.join(MULTI_LESION_RULES)}")
        return cls(
            raw_to_disease=labels["sources"],
            priority=tuple(labels["primary_priority"]) + tuple(rest),
            accepted_grades=frozenset(profile["labels"]["rsna_grades"]),
            multi_lesion=rule,
            normal_as_healthy=bool(profile["labels"].get("rsna_normal_as_healthy", False)),
        )

    def apply(self, record: SourceRecord) -> tuple[Labelled | Dropped, list[str]]:
        """Label one record; also return warnings (unknown labels, contradictions) for the report."""
        mapping = self.raw_to_disease.get(record.source, {})
        warnings: list[str] = []
        drops: list[str] = []
        graded_out = 0
        graded_normal = 0
        found: dict[str, list] = {}
        for finding in record.findings:
            target = mapping.get(finding.label)
            if target is None:
                warnings.append(f"unknown label {finding.label!r} ignored (not in configs/labels.yaml)")
                continue
            if target.startswith(DROP_PREFIX):
                drops.append(target[len(DROP_PREFIX):].strip())
                continue
            if record.source == "rsna" and finding.severity not in self.accepted_grades:
                graded_out += 1
                graded_normal += finding.severity == NORMAL
                continue
            found.setdefault(target, []).append(finding)

        if HEALTHY in found and len(found) > 1:
            warnings.append(f"'{HEALTHY}' together with lesions {sorted(set(found) - {HEALTHY})}: lesions win")
            del found[HEALTHY]
        if not found and self.normal_as_healthy and graded_normal and graded_normal == len(record.findings):
            return Labelled(disease=HEALTHY, present=(HEALTHY,), levels=(), severity=NORMAL), warnings
        if not found:
            return Dropped(self._drop_reason(drops, graded_out, warnings)), warnings

        disease = self.primary(found)
        levels = {f.level for f in found[disease] if f.level is not None}
        grades = [f.severity for f in found[disease] if f.severity in GRADE_ORDER]
        return (
            Labelled(
                disease=disease,
                present=tuple(d for d in DISEASES if d in found),
                levels=tuple(level for level in LEVELS if level in levels),
                severity=max(grades, key=GRADE_ORDER.index) if grades else None,
            ),
            warnings,
        )

    def primary(self, found: Mapping[str, list]) -> str:
        """The SDD answer among the diseases found on one image (each with its list of annotations)."""
        ranked = [d for d in self.priority if d in found]
        if self.multi_lesion == "most_boxes":
            return max(ranked, key=lambda d: (len(found[d]), -ranked.index(d)))
        return ranked[0]

    def _drop_reason(self, drops: list[str], graded_out: int, warnings: list[str]) -> str:
        if drops:
            return "; ".join(sorted(set(drops)))
        if graded_out:
            grades = ", ".join(sorted(str(g) for g in self.accepted_grades))
            return f"no annotated level graded {grades} (profile's rsna_grades)"
        if warnings:
            return "no known label"
        return "no label at all"


def relabel_by_study(images: list[dict[str, Any]], label_map: LabelMap, views: Sequence[str]) -> int:
    """Label RSNA slices of `views` by every condition their study grades at the slice's levels.

    The release annotates only one condition per slice (the recesses on an axial slice), but an axial slice
    through a disc also shows the canal and both foramina, which the study grades at that level on its
    other slices. Taking all of them stops the MRI sequence from deciding the label. `images` are records
    rows (with `findings`), changed in place; returns how many changed.
    """
    mapping = label_map.raw_to_disease.get("rsna", {})
    grades: dict[str, dict[tuple[str, str], list[str | None]]] = {}  # study -> (level, disease) -> grades
    for image in images:
        if image["source"] == "rsna":
            study = grades.setdefault(image["patient_id"], {})
            for f in image["findings"]:
                if f["level"] is not None and f["label"] in mapping:
                    study.setdefault((f["level"], mapping[f["label"]]), []).append(f["severity"])
    changed = 0
    for image in images:
        if image["source"] != "rsna" or image["view"] not in views:
            continue
        levels = {f["level"] for f in image["findings"] if f["level"] is not None}
        found: dict[str, list] = {}
        known_normal = True
        study = grades.get(image["patient_id"], {})
        for (level, disease), seen in study.items():
            if level not in levels:
                continue
            if any(g in label_map.accepted_grades for g in seen):
                found.setdefault(disease, []).append(level)
            known_normal &= all(g == NORMAL for g in seen)
        before = (image["disease"], list(image["present"]), list(image["levels"]))
        if found:
            disease = label_map.primary(found)
            worst = [g for (lv, d), seen in study.items() if d == disease and lv in found[disease]
                     for g in seen if g in GRADE_ORDER]
            image.update(disease=disease, present=[d for d in DISEASES if d in found],
                         levels=[lv for lv in LEVELS if lv in found[disease]],
                         severity=max(worst, key=GRADE_ORDER.index) if worst else None)
        elif known_normal and label_map.normal_as_healthy:
            image.update(disease=HEALTHY, present=[HEALTHY], levels=[], severity=NORMAL)
        changed += before != (image["disease"], list(image["present"]), list(image["levels"]))
    return changed
