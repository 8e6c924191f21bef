"""VinDr-SpineXR replica: box CSVs and one DX/CR DICOM per image, in the PhysioNet layout.

Copies docs/sources.md section 4, including the variety readers and the standardizer must survive: bit depths
10/12/14/16, MONOCHROME1 and 2, a window (single or multi-valued), a VOI LUT or neither, JPEG 2000 files
(most, as in the release; some with a 16-bit codestream under a lower header BitsStored), a few RLE and
uncompressed ones, optional patient tags. Planted: empty `No finding` boxes, the release's `Spondylolysthesis`
spelling, an unknown `Scoliosis` label, a degenerate box, and images whose only labels the label map drops.
"""

from __future__ import annotations


from pathlib import Path

import numpy as np
from pydicom.uid import (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                         ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless)

from build.replicas.phantom import (Job, Lesion, Spine, build_spine, count, dicom_fields, edge_case, pick,
                                    render, rng_for, spread, to_uint, write_csv, write_dicom, xray_scene)

SOURCE = "vindr"
ROOT = ("vindr-spinexr-a-large-annotated-medical-image-dataset-for-spinal-lesions-detection-and-"
        "classification-from-radiographs-1.0.0")
PAPER_IMAGES = 10466
HEADER = ("study_id", "series_id", "image_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax")
NO_FINDING = "No finding"
UNKNOWN = "Scoliosis"  # not a release label: kept as written by the reader, ignored by the label map; warned
# release string -> (SpineBench disease, or None where the label map drops it; drawn kind; share; most boxes)
LESIONS = {
    "Osteophytes": ("Osteophytes", "osteophyte", 0.38, 3),
    "Disc space narrowing": ("Disc space narrowing", "narrowing", 0.15, 2),
    "Surgical implant": (None, "implant", 0.07, 1),
    "Foraminal stenosis": ("Foraminal stenosis", "foraminal", 0.08, 2),
    "Spondylolysthesis": ("Spondylolisthesis", "slip", 0.12, 1),  # sic, as in the release
    "Vertebral collapse": ("Vertebral collapse", "collapse", 0.1, 1),
    "Other lesions": (None, "other", 0.1, 1),
    UNKNOWN: (None, "scoliosis", 0.0, 1),
}
# label sets every tree gets, whatever its scale; three of them are listed as edge cases by position
PLANTED = (
    ("Surgical implant",), ("Other lesions",), ("Osteophytes", UNKNOWN),
    ("Disc space narrowing", "Osteophytes", "Vertebral collapse"),
    ("Spondylolysthesis", "Foraminal stenosis"), (NO_FINDING,),
)
DEGENERATE, MISSPELLED, EMPTY_BOX = 3, 4, 5
BODY_PART = {"lumbar": ("LSPINE", "L-SPINE"), "cervical": ("CSPINE",)}
VIEW_POSITION = {"AP": "AP", "lateral": "LL"}
SOP_CLASS = {"DX": DigitalXRayImageStorageForPresentation, "CR": ComputedRadiographyImageStorage}
SYNTAXES = (ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless)


def plant(root: Path, seed: int, scale: float) -> tuple[list[dict], list[dict], list[Job]]:
    """Write both annotation CSVs now; return manifest images, edge cases and one DICOM job per image."""
    rng = rng_for(seed, SOURCE)
    n = count(PAPER_IMAGES, scale, 20)
    planted = list(PLANTED) + [random_labels(rng) for _ in range(n - len(PLANTED))]
    order = [int(i) for i in rng.permutation(n)]
    label_sets = [planted[i] for i in order]
    kept = [bool(diseases_of(labels)) for labels in label_sets]
    good, dropped = iter(file_looks(rng, sum(kept))), iter(file_looks(rng, n - sum(kept)))
    images, edges, jobs, rows = [], [], [], {"train": [], "test": []}
    for i, (labels, (study, series, split), keep) in enumerate(zip(label_sets, group(rng, n), kept)):
        image_id = rng.bytes(16).hex()
        spine, raw = draw_labels(rng, labels)
        table, rad = rows[split], f"rad{int(rng.integers(1, 9))}"
        csv_path = f"{ROOT}/annotations/{split}.csv"
        if labels == (NO_FINDING,):
            table.append((study, series, image_id, rad, NO_FINDING, "", "", "", ""))
        for label, (_, box, _) in zip(raw, spine.marks):
            table.append((study, series, image_id, rad, label, *(f"{v:.2f}" for v in clamp(box, spine))))
        if order[i] == DEGENERATE:
            xmin, ymin, _, ymax = table[-1][5:]
            table.append((study, series, image_id, rad, table[-1][4], xmin, ymin, xmin, ymax))
            edges.append(edge_case(SOURCE, csv_path, "degenerate_box", "warn", image_id,
                                   "xmin == xmax: the box is lost, the image keeps its label"))
        if order[i] == MISSPELLED:
            edges.append(edge_case(SOURCE, csv_path, "misspelled_label", "accept", image_id,
                                   "Spondylolysthesis (sic): read as Spondylolisthesis"))
        if order[i] == EMPTY_BOX:
            edges.append(edge_case(SOURCE, csv_path, "empty_no_finding_box", "accept", image_id,
                                   "No finding row with empty box fields"))
        if UNKNOWN in labels:
            edges.append(edge_case(SOURCE, csv_path, "unknown_label", "warn", image_id, UNKNOWN))
        path = f"{ROOT}/{split}_images/{image_id}.dicom"
        tags, syntax, header, stored = dicom_tags(rng, next(good if keep else dropped), spine, study, series,
                                                  image_id)
        codestream = 16 if syntax == JPEG2000Lossless and tags["BitsStored"] < 16 and rng.random() < 0.25 \
            else None
        if codestream:
            edges.append(edge_case(SOURCE, path, "bits_stored_mismatch", "accept", image_id,
                                   f"header BitsStored {tags['BitsStored']}, JPEG 2000 codestream 16-bit"))
        jobs.append((xray_dicom, (root / path, spine, int(rng.integers(2**63)), tags, syntax, stored,
                                  codestream)))
        if not keep:
            edges.append(edge_case(SOURCE, path, "dropped_labels_only", "drop", image_id, ", ".join(labels)))
            continue
        images.append({
            "source": SOURCE, "path": path, "image_key": image_id, "patient_id": study, "modality": "X-ray",
            "diseases": diseases_of(labels), "raw_labels": sorted(set(labels)), "levels": {},
            "boxes": box_counts(raw),
            "split": split, **header, **dicom_fields(tags, syntax),
        })
    for split, table in rows.items():
        write_csv(root / ROOT / "annotations" / f"{split}.csv", HEADER, table)
    return images, edges, jobs


def box_counts(raw: list[str]) -> dict[str, int]:
    """Good boxes per SpineBench disease (what the `most_boxes` rule counts; the degenerate one is not)."""
    counts: dict[str, int] = {}
    for label in raw:
        disease = LESIONS[label][0]
        if disease is not None:
            counts[disease] = counts.get(disease, 0) + 1
    return counts


def diseases_of(labels: tuple[str, ...]) -> list[str]:
    """The SpineBench diseases planted under these release labels (empty when all are dropped)."""
    if labels == (NO_FINDING,):
        return ["Healthy"]
    return sorted({LESIONS[label][0] for label in labels} - {None})


def random_labels(rng: np.random.Generator) -> tuple[str, ...]:
    """About half the images show no finding; the rest one to three lesion types."""
    if rng.random() < 0.5:
        return (NO_FINDING,)
    names = [name for name in LESIONS if name != UNKNOWN]
    shares = np.array([LESIONS[name][2] for name in names])
    k = pick(rng, (1, 2, 3), (0.6, 0.3, 0.1))
    return tuple(names[i] for i in sorted(rng.choice(len(names), k, replace=False, p=shares / shares.sum())))


def group(rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
    """(study, series, split) per image: studies of one to three images, a fifth of studies in test."""
    out: list[tuple[str, str, str]] = []
    while len(out) < n:
        size = min(n - len(out), pick(rng, (1, 2, 3), (0.3, 0.5, 0.2)))
        study, shared = rng.bytes(16).hex(), rng.bytes(16).hex() if rng.random() < 0.3 else None
        split = "train" if not out else "test" if len(out) + size == n or rng.random() < 0.2 else "train"
        out += [(study, shared or rng.bytes(16).hex(), split) for _ in range(size)]
    return out


def draw_labels(rng: np.random.Generator, labels: tuple[str, ...]) -> tuple[Spine, list[str]]:
    """A radiograph showing every planted label; returns the spine and the release label of each mark."""
    kinds = {LESIONS[label][1] for label in labels if label != NO_FINDING}
    region = "lumbar" if "scoliosis" in kinds or rng.random() < 0.85 else "cervical"
    view = ("lateral" if "foraminal" in kinds else "AP" if "scoliosis" in kinds
            else pick(rng, ("lateral", "AP"), (0.6, 0.4)))
    lesions, raw = [], []
    for label in labels:
        if label == NO_FINDING:
            continue
        _, kind, _, most = LESIONS[label]
        places = {"slip": (2, 3, 4), "implant": (2, 3), "scoliosis": (0,)}.get(kind, range(5))
        for index in rng.choice(places, min(len(places), int(rng.integers(1, most + 1))), replace=False):
            side = -1 if view == "lateral" and kind == "slip" else pick(rng, (-1, 1))
            lesions.append(Lesion(kind, int(index), side))
            raw.append(label)
    if view == "AP":
        sideways = pick(rng, (-1, 1)) * rng.uniform(0.06, 0.1) if "scoliosis" in kinds else 0.0
        bend = (sideways + rng.uniform(-0.015, 0.015), 0.0, 0.0)
    elif region == "cervical":
        bend = (-rng.uniform(0.08, 0.13), 0.0, rng.uniform(-0.04, 0.04))
    else:
        bend = (-rng.uniform(0.03, 0.07), 0.0, 0.0)
    width, height = int(rng.integers(160, 201)), int(rng.integers(208, 257))
    return build_spine(rng, width, height, region, view, lesions, bend), raw


def clamp(box: tuple[float, float, float, float], spine: Spine) -> tuple[float, ...]:
    xmin, ymin, xmax, ymax = box
    w, h = spine.width - 1, spine.height - 1
    return (min(max(xmin, 0), w), min(max(ymin, 0), h), min(max(xmax, 0), w), min(max(ymax, 0), h))


def file_looks(rng: np.random.Generator, n: int) -> list[dict]:
    """How each file is stored; every variant appears at least once when n allows."""
    columns = {
        "bits": spread(rng, n, (10, 12, 14, 16), (0.15, 0.45, 0.25, 0.15)),
        "photometric": spread(rng, n, ("MONOCHROME1", "MONOCHROME2"), (0.35, 0.65)),
        "voi": spread(rng, n, ("window", "window-multi", "lut", "none"), (0.5, 0.15, 0.15, 0.2)),
        # JPEG 2000 dominates, as in the release; a few stay uncompressed or RLE for the variety
        "syntax": spread(rng, n, (JPEG2000Lossless, RLELossless, ExplicitVRLittleEndian), (0.8, 0.08, 0.12)),
        "modality": spread(rng, n, ("DX", "CR"), (0.6, 0.4)),
    }
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def dicom_tags(rng: np.random.Generator, look: dict, spine: Spine, study: str, series: str,
               image_id: str) -> tuple[dict, str, dict, tuple[int, int]]:
    """Tags, transfer syntax, the header facts a reader can see (region and view only where tagged) and
    the stored pixel range of one image."""
    bits, top = look["bits"], 2 ** look["bits"] - 1
    tags = {
        "SOPClassUID": SOP_CLASS[look["modality"]], "SOPInstanceUID": image_id, "StudyInstanceUID": study,
        "SeriesInstanceUID": series, "Modality": look["modality"],
        "PhotometricInterpretation": look["photometric"], "BitsStored": bits,
    }
    header = {"region": "unknown", "view": "unknown", "sex": None, "age": None, "body_part": None}
    if rng.random() < 0.7:
        header["sex"] = tags["PatientSex"] = pick(rng, "FM")
    if rng.random() < 0.6:
        header["age"] = int(rng.integers(20, 86))
        tags["PatientAge"] = f"{header['age']:03d}Y"
    if rng.random() < 0.6:
        header["body_part"] = tags["BodyPartExamined"] = pick(rng, BODY_PART[spine.region])
        header["region"] = spine.region
    if rng.random() < 0.5:
        tags["ViewPosition"] = VIEW_POSITION[spine.view]
        header["view"] = spine.view
    if look["voi"] == "lut":
        size = min(4096, top + 1)
        first = int(rng.integers(0, top + 2 - size))
        stored = (first + size // 20, first + size - 1 - size // 20)
        curve = np.linspace(0, 1, size) ** rng.uniform(0.7, 1.3) * 65535
        tags["VOILUTSequence"] = (first, tuple(int(v) for v in curve))
    else:
        stored = (int(top * rng.uniform(0.02, 0.1)), int(top * rng.uniform(0.75, 0.98)))
        center, width = sum(stored) / 2, (stored[1] - stored[0]) * rng.uniform(0.9, 1.2)
        if look["voi"] == "window":
            tags |= {"WindowCenter": f"{center:.1f}", "WindowWidth": f"{width:.1f}"}
        elif look["voi"] == "window-multi":
            tags |= {"WindowCenter": [f"{center:.1f}", f"{center * 0.9:.1f}"],
                     "WindowWidth": [f"{width:.1f}", f"{width * 1.3:.1f}"]}
    return tags, look["syntax"], header, stored


def xray_dicom(path: Path, spine: Spine, seed: int, tags: dict, syntax: str, stored: tuple[int, int],
               codestream_bits: int | None = None) -> None:
    """Draw and write one radiograph; MONOCHROME1 stores bone dark, as such files do."""
    pixels = render(xray_scene(spine), np.random.default_rng(seed))
    if tags["PhotometricInterpretation"] == "MONOCHROME1":
        pixels = 1 - pixels
    write_dicom(path, to_uint(pixels, *stored), tags, syntax, codestream_bits=codestream_bits)
