"""The label map on hand-made records: each case states what the paper or our policy says should happen."""

import pytest

from build import config
from build.labels import Dropped, Labelled, LabelMap
from build.records import Finding, SourceRecord
from spinebench import DISEASES


def record(source: str, *findings: Finding) -> SourceRecord:
    return SourceRecord(source=source, image_key="k", patient_id="p", modality="X-ray", region="lumbar",
                        view="AP", path="x", findings=tuple(findings))


@pytest.fixture(params=["paper", "clinical"])
def label_map(request) -> LabelMap:
    return LabelMap.from_config(config.profile(request.param))


def test_every_mapped_disease_is_in_the_vocabulary():
    labels = config.load("labels")
    assert [d["name"] for d in labels["diseases"]] == list(DISEASES)
    assert len(DISEASES) == 12 and DISEASES[-1] == "Healthy"
    assert set(labels["primary_priority"]) <= set(DISEASES)


def test_vindr_misspelling_is_normalised(label_map):
    outcome, warnings = label_map.apply(record("vindr", Finding("Spondylolysthesis")))
    assert outcome == Labelled("Spondylolisthesis", ("Spondylolisthesis",), (), None)
    assert warnings == []


@pytest.mark.parametrize("raw", ["Surgical implant", "Other lesions"])
def test_paper_drops_are_dropped_with_a_reason(label_map, raw):
    outcome, _ = label_map.apply(record("vindr", Finding(raw)))
    assert isinstance(outcome, Dropped)
    assert "dropped by the paper" in outcome.reason


def test_unknown_label_is_warned_and_never_guessed(label_map):
    outcome, warnings = label_map.apply(record("vindr", Finding("Scoliosis")))
    assert isinstance(outcome, Dropped) and outcome.reason == "no known label"
    assert "Scoliosis" in warnings[0]


def test_multi_lesion_image_takes_the_priority_disease_and_keeps_the_rest_present(label_map):
    outcome, _ = label_map.apply(
        record("vindr", Finding("Osteophytes"), Finding("Vertebral collapse"), Finding("Disc space narrowing"))
    )
    assert outcome.disease == "Vertebral collapse"  # first of primary_priority
    assert outcome.present == ("Disc space narrowing", "Osteophytes", "Vertebral collapse")  # DISEASES order


def test_lesion_beats_no_finding_with_a_warning(label_map):
    outcome, warnings = label_map.apply(record("vindr", Finding("No finding"), Finding("Osteophytes")))
    assert outcome.disease == "Osteophytes" and "Healthy" not in outcome.present
    assert len(warnings) == 1


def test_rsna_left_and_right_merge_and_levels_come_in_spine_order(label_map):
    outcome, _ = label_map.apply(
        record(
            "rsna",
            Finding("Right Neural Foraminal Narrowing", "L5/S1", "Severe"),
            Finding("Left Neural Foraminal Narrowing", "L3/L4", "Moderate"),
        )
    )
    assert outcome == Labelled("Foraminal stenosis", ("Foraminal stenosis",), ("L3/L4", "L5/S1"), "Severe")


def test_paper_keeps_normal_grades_clinical_drops_them():
    slice_ = record("rsna", Finding("Spinal Canal Stenosis", "L1/L2", "Normal/Mild"),
                    Finding("Spinal Canal Stenosis", "L4/L5", "Moderate"),
                    Finding("Spinal Canal Stenosis", "L5/S1", None))
    paper, _ = LabelMap.from_config(config.profile("paper")).apply(slice_)
    clinical, _ = LabelMap.from_config(config.profile("clinical")).apply(slice_)
    assert paper.levels == ("L1/L2", "L4/L5", "L5/S1") and paper.severity == "Moderate"
    assert clinical.levels == ("L4/L5",) and clinical.severity == "Moderate"


def test_clinical_drops_a_slice_with_only_normal_levels():
    slice_ = record("rsna", Finding("Left Subarticular Stenosis", "L2/L3", "Normal/Mild"))
    outcome, _ = LabelMap.from_config(config.profile("clinical")).apply(slice_)
    assert isinstance(outcome, Dropped) and "Moderate" in outcome.reason


def test_buu_slip_levels_and_normal(label_map):
    slip, _ = label_map.apply(record("buu", Finding("slip", "L4/L5")))
    normal, _ = label_map.apply(record("buu", Finding("normal")))
    assert (slip.disease, slip.levels) == ("Spondylolisthesis", ("L4/L5",))
    assert (normal.disease, normal.levels) == ("Healthy", ())


def test_multi_lesion_rules():
    """Two osteophyte boxes and one of disc space narrowing: the priority list says narrowing, the box
    count says osteophytes (the authors' shares: Osteophytes dominate)."""
    image = record("vindr", Finding("Disc space narrowing"), Finding("Osteophytes"), Finding("Osteophytes"))
    rules = {}
    for rule in ("priority", "most_boxes", "per_lesion"):
        profile = {**config.profile("clinical"), "labels": {"rsna_grades": ["Moderate"], "multi_lesion": rule}}
        rules[rule], _ = LabelMap.from_config(profile).apply(image)
    assert rules["priority"].disease == rules["per_lesion"].disease == "Disc space narrowing"
    assert rules["most_boxes"].disease == "Osteophytes"
    assert rules["most_boxes"].present == ("Disc space narrowing", "Osteophytes")
    assert LabelMap.from_config(config.profile("paper")).multi_lesion == "most_boxes"
    with pytest.raises(SystemExit, match="multi_lesion"):
        LabelMap.from_config({"name": "x", "labels": {"rsna_grades": ["Moderate"], "multi_lesion": "rarest"}})


def test_valid_makes_a_graded_normal_slice_healthy_and_still_drops_an_ungraded_one():
    valid = LabelMap.from_config(config.profile("valid"))
    normal, _ = valid.apply(record("rsna", Finding("Left Subarticular Stenosis", "L2/L3", "Normal/Mild")))
    assert normal == Labelled("Healthy", ("Healthy",), (), "Normal/Mild")
    ungraded, _ = valid.apply(record("rsna", Finding("Left Subarticular Stenosis", "L2/L3", None)))
    assert isinstance(ungraded, Dropped)


def rsna_row(view: str, disease: str, levels: list[str], *findings: tuple[str, str, str | None]) -> dict:
    return {"source": "rsna", "patient_id": "s1", "view": view, "disease": disease, "present": [disease],
            "levels": levels, "severity": None,
            "findings": [{"label": c, "level": lv, "severity": g} for c, lv, g in findings]}


def test_an_axial_slice_takes_every_condition_its_study_grades_at_its_level():
    from build.labels import relabel_by_study

    axial = rsna_row("Axial T2", "Subarticular stenosis", ["L4/L5"],
                     ("Left Subarticular Stenosis", "L4/L5", "Moderate"))
    canal = rsna_row("Sagittal T2/STIR", "Spinal canal stenosis", ["L4/L5"],
                     ("Spinal Canal Stenosis", "L4/L5", "Severe"), ("Spinal Canal Stenosis", "L1/L2", "Normal/Mild"))
    quiet = rsna_row("Axial T2", "Healthy", [], ("Left Subarticular Stenosis", "L1/L2", "Normal/Mild"))
    rows = [axial, canal, quiet]
    changed = relabel_by_study(rows, LabelMap.from_config(config.profile("valid")), ["Axial T2"])
    assert changed == 1  # the axial slice at L4/L5; the L1/L2 one stays Healthy (canal normal there too)
    assert axial["present"] == ["Subarticular stenosis", "Spinal canal stenosis"]
    assert axial["disease"] == "Subarticular stenosis" and axial["levels"] == ["L4/L5"]
    assert canal["present"] == ["Spinal canal stenosis"] and quiet["disease"] == "Healthy"
