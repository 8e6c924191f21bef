"""Shared kit of the replica generator: seeded randomness, synthetic spines, and the file writers.

A picture's look follows its planted disease (a slipped body, narrowed discs, a neck curve, corner spurs,
a flattened body, a pinched bright CSF band) so that image similarity in later stages means something.
Annotations (endplates, keypoints, boxes, MRI points) are computed from the same geometry the pixels are
drawn from, so they always agree. Geometry is cheap and built while planning; pixels are drawn in jobs
that may run in worker processes, each from its own seed, so output never depends on the worker count.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
Shape = tuple[tuple[Point, ...], float, int]  # polygon (or polyline when width > 0), value in [0, 1], width
Job = tuple[Callable[..., None], tuple]  # one pixel file to write: fn(*args)

LUMBAR = ("L1", "L2", "L3", "L4", "L5", "S1")
CERVICAL = ("C2", "C3", "C4", "C5", "C6", "C7")
LEVELS = tuple(f"{upper}/{lower}" for upper, lower in zip(LUMBAR, LUMBAR[1:]))  # the disc below body i

# One fake identifier per header field that real releases must scrub; never a real-looking value.
PHI_TAGS = ("PatientName", "ReferringPhysicianName", "InstitutionName", "InstitutionAddress", "OperatorsName")
PHI_MARKERS = {tag: f"SPINEBENCH-FAKE-PHI-{n}" for n, tag in enumerate(PHI_TAGS, 1)}

# Diseases drawn with similar shapes: image-similarity hard negatives should pick these for each other.
# Subarticular stenosis is in no group: it is only ever seen on axial slices, which look like nothing else.
LOOKALIKES = (
    ("Foraminal stenosis", "Spinal canal stenosis"),  # sagittal MR, a pinched bright band behind the discs
    ("Cervical kyphosis", "Straight cervical vertebrae"),  # a neck that does not curve forward
    ("Cervical lordosis", "Sigmoid cervical vertebrae"),  # a neck with a forward bulge
    ("Disc space narrowing", "Vertebral collapse"),  # lost height with bright sclerotic lines
)


# --- planning helpers ---------------------------------------------------------------------------------

def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """An independent stream per (seed, keys), so no file depends on the order others are made in."""
    return np.random.default_rng([seed, *(zlib.crc32(str(key).encode()) for key in keys)])


def count(paper: int, scale: float, minimum: int) -> int:
    """How many of something at this scale: scale 100 is the paper's size; small trees keep every case."""
    return max(minimum, round(paper * scale / 100))


def spread(rng: np.random.Generator, n: int, options: Sequence[Any], weights: Sequence[float]) -> list[Any]:
    """n weighted draws in random order, each option at least once when n allows it."""
    p = np.asarray(weights, float) / sum(weights)
    picks = list(options[:n]) + [options[i] for i in rng.choice(len(options), max(0, n - len(options)), p=p)]
    order = rng.permutation(len(picks))
    return [picks[i] for i in order]


def pick(rng: np.random.Generator, options: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
    """One weighted draw that keeps the option's own type (numpy would turn it into a numpy scalar)."""
    p = None if weights is None else np.asarray(weights, float) / sum(weights)
    return options[int(rng.choice(len(options), p=p))]


def edge_case(source: str, path: str, kind: str, expect: str, image_key: str | None = None,
              detail: str = "") -> dict:
    """One manifest row for a planted case. expect: reject (file or row not used, rejection reported),
    warn (used, with a warning), drop (read, but the label map drops every label), accept (read as usual)."""
    return {"source": source, "path": path, "kind": kind, "expect": expect, "image_key": image_key,
            "detail": detail}


def write_csv(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)


def fixed_zip(data: bytes, stamp: str = "2024-01-01T00:00:00Z") -> bytes:
    """Rewrite an Office zip with fixed entry dates and core timestamps: same input, same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = body.decode()
                for tag in ("created", "modified"):
                    start = text.index(f"<dcterms:{tag}")
                    start = text.index(">", start) + 1
                    text = text[:start] + stamp + text[text.index("<", start):]
                body = text.encode()
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(2024, 1, 1, 0, 0, 0)), body,
                         compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


# --- geometry -----------------------------------------------------------------------------------------

def oval(cx: float, cy: float, rx: float, ry: float, n: int = 18) -> tuple[Point, ...]:
    return tuple((cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n))
                 for k in range(n))


def bbox(points: Iterable[Point], pad: float = 0.0) -> Box:
    xs, ys = zip(*points)
    return (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)


@dataclass(frozen=True)
class Body:
    """A vertebral body as a tilted quadrilateral; front = image left (anterior on laterals)."""

    name: str
    cx: float
    cy: float
    w: float
    h_front: float
    h_back: float
    angle: float  # endplate tilt in radians

    def corners(self) -> tuple[Point, Point, Point, Point]:
        """Top-front, top-back, bottom-back, bottom-front."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        offsets = ((-self.w / 2, -self.h_front / 2), (self.w / 2, -self.h_back / 2),
                   (self.w / 2, self.h_back / 2), (-self.w / 2, self.h_front / 2))
        return tuple((self.cx + dx * c - dy * s, self.cy + dx * s + dy * c) for dx, dy in offsets)

    def top(self) -> tuple[Point, Point]:
        tf, tb, _, _ = self.corners()
        return tf, tb

    def bottom(self) -> tuple[Point, Point]:
        _, _, bb, bf = self.corners()
        return bf, bb


@dataclass(frozen=True)
class Lesion:
    """A planted change: kind in slip | narrowing | collapse | osteophyte | foraminal | implant | other |
    scoliosis; index = the body (or the disc below it); side = slip direction (-1 front/left, +1 back)."""

    kind: str
    index: int
    side: int = -1


@dataclass
class Spine:
    """A drawn column: bodies cranial to caudal, plus one box and extra shapes per lesion."""

    width: int
    height: int
    region: str  # lumbar | cervical
    view: str  # AP | lateral
    bodies: list[Body]
    marks: list[tuple[Lesion, Box, list[Shape]]] = field(default_factory=list)

    def has(self, kind: str, index: int) -> bool:
        return any(lesion.kind == kind and lesion.index == index for lesion, _, _ in self.marks)

    def disc_back(self, i: int) -> Point:
        """Posterior middle of the disc below body i."""
        (_, upper), (_, lower) = self.bodies[i].bottom(), self.bodies[i + 1].top()
        return ((upper[0] + lower[0]) / 2, (upper[1] + lower[1]) / 2)

    def foramen(self, i: int) -> tuple[Point, float, float]:
        """Centre and radii of the intervertebral foramen below body i (lateral views)."""
        x, y = self.disc_back(i)
        body = self.bodies[i]
        rx, ry = 0.13 * body.w, 0.42 * body.h_back
        if self.has("foraminal", i):
            rx, ry = rx * 0.55, ry * 0.3
        return (x + 0.2 * body.w, y), rx, ry


def build_spine(rng: np.random.Generator, width: int, height: int, region: str, view: str,
                lesions: Sequence[Lesion] = (), bend: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Spine:
    """Lay out a column from the bottom up; bend = (sin(pi t), sin(2 pi t), tilt) offsets as image widths."""
    names = LUMBAR if region == "lumbar" else CERVICAL
    n = len(names)
    lateral = view == "lateral"
    top, bottom = height * rng.uniform(0.1, 0.16), height * rng.uniform(0.82, 0.88)
    disc = rng.uniform(0.24, 0.34)
    h0 = (bottom - top) / (n + (n - 1) * disc)
    w0 = h0 * (1.05 if region == "cervical" else 1.35 if lateral else 1.6)
    gaps = [h0 * disc * rng.uniform(0.9, 1.1) for _ in range(n - 1)]
    heights = [[h0 * u, h0 * u] for u in rng.uniform(0.92, 1.05, n)]
    for lesion in lesions:
        if lesion.kind == "narrowing":
            gaps[lesion.index] *= rng.uniform(0.2, 0.35)
        elif lesion.kind == "collapse":
            h = heights[lesion.index][0]
            heights[lesion.index] = [h * 0.42, h * 0.8] if lateral else [h * 0.5, h * 0.5]
    if region == "lumbar":
        heights[-1] = [h * 1.25 for h in heights[-1]]
    ys, y = [0.0] * n, bottom
    for i in reversed(range(n)):
        h = max(heights[i])
        ys[i] = y - h / 2
        y -= h + (gaps[i - 1] if i else 0.0)
    a1, a2, tilt = bend
    x0 = width * (rng.uniform(0.36, 0.42) if lateral else rng.uniform(0.47, 0.53))
    span = ys[-1] - ys[0]
    bodies = []
    for i, name in enumerate(names):
        t = (ys[i] - ys[0]) / span
        x = x0 + width * (a1 * math.sin(math.pi * t) + a2 * math.sin(2 * math.pi * t) + tilt * (t - 0.5))
        slope = width * (a1 * math.pi * math.cos(math.pi * t) + 2 * math.pi * a2 * math.cos(2 * math.pi * t)
                         + tilt) / span
        angle = -math.atan(slope) + rng.normal(0, 0.03)
        if name == "S1" and lateral:
            angle -= rng.uniform(0.45, 0.6)
        bodies.append(Body(name, x, ys[i], w0 * rng.uniform(0.95, 1.05), *heights[i], angle))
    for lesion in lesions:
        if lesion.kind == "slip":
            dx = lesion.side * w0 * rng.uniform(0.2, 0.32)
            bodies[: lesion.index + 1] = [_moved(b, dx) for b in bodies[: lesion.index + 1]]
    spine = Spine(width, height, region, view, bodies)
    spine.marks = [(lesion, *_mark(rng, spine, lesion)) for lesion in lesions]
    return spine


def _moved(body: Body, dx: float) -> Body:
    return Body(body.name, body.cx + dx, body.cy, body.w, body.h_front, body.h_back, body.angle)


def _mark(rng: np.random.Generator, spine: Spine, lesion: Lesion) -> tuple[Box, list[Shape]]:
    """The box a reader would draw around a lesion, and the shapes that make it visible."""
    i, bodies = lesion.index, spine.bodies
    body = bodies[i]
    if lesion.kind == "slip":
        return bbox(bodies[i].corners() + bodies[i + 1].corners(), 2), []
    if lesion.kind == "narrowing":
        upper, lower = body.bottom(), bodies[i + 1].top()
        return bbox(upper + lower, 0.12 * body.w), [(upper, 0.95, 2), (lower, 0.95, 2)]
    if lesion.kind == "collapse":
        tf, tb, bb, bf = body.corners()
        mid = (((tf[0] + bf[0]) / 2, (tf[1] + bf[1]) / 2), ((tb[0] + bb[0]) / 2, (tb[1] + bb[1]) / 2))
        return bbox(body.corners(), 2), [((tf, tb), 0.95, 2), ((bf, bb), 0.95, 2), (mid, 0.9, 1)]
    if lesion.kind == "osteophyte":
        tf, tb, bb, bf = body.corners()
        corners = ((tf, -1), (bf, 1)) if spine.view == "lateral" else ((tf, -1), (bf, 1), (tb, -1), (bb, 1))
        spurs = []
        for (x, y), down in corners:
            out = -1 if x <= body.cx else 1
            size = body.w * rng.uniform(0.14, 0.24)
            spurs.append(((x, y), (x + out * size, y + down * size * 0.35), (x, y + down * size * 0.7)))
        return bbox([p for spur in spurs for p in spur], 2), [(spur, 1.0, 0) for spur in spurs]
    if lesion.kind == "foraminal":  # marks are not set yet: this is the normal foramen, drawn narrowed later
        (cx, cy), rx, ry = spine.foramen(i)
        return bbox(oval(cx, cy, rx * 1.2, ry * 1.2)), []
    if lesion.kind == "implant":
        lower = bodies[min(i + 1, len(bodies) - 1)]
        x = body.cx + body.w * 0.25
        rod = ((x - 2, body.cy), (x + 2, body.cy), (x + 2, lower.cy), (x - 2, lower.cy))
        screws = [((b.cx - 0.3 * b.w, b.cy - 1.5), (x, b.cy - 1.5), (x, b.cy + 1.5),
                   (b.cx - 0.3 * b.w, b.cy + 1.5)) for b in (body, lower)]
        return bbox(rod + screws[0] + screws[1], 2), [(s, 1.0, 0) for s in (rod, *screws)]
    if lesion.kind == "other":
        blob = oval(body.cx + rng.uniform(-0.2, 0.2) * body.w, body.cy, 0.18 * body.w, 0.22 * body.h_back)
        return bbox(blob, 2), [(blob, 0.3, 0)]
    if lesion.kind == "scoliosis":
        return bbox([p for b in bodies for p in b.corners()], 3), []
    raise ValueError(f"unknown lesion kind {lesion.kind!r}")


# --- drawing ------------------------------------------------------------------------------------------

@dataclass
class Scene:
    """What to paint, in order: later shapes cover earlier ones."""

    width: int
    height: int
    background: float
    shapes: list[Shape] = field(default_factory=list)

    def add(self, points: Iterable[Point], value: float, width: int = 0) -> None:
        self.shapes.append((tuple(points), value, width))


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Paint, blur and add noise and a gain ramp; float32 in [0, 1]."""
    image = Image.new("L", (scene.width, scene.height), round(scene.background * 255))
    draw = ImageDraw.Draw(image)
    for points, value, width in scene.shapes:
        if width:
            draw.line(points, fill=round(value * 255), width=width)
        else:
            draw.polygon(points, fill=round(value * 255))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.3)))
    pixels = np.asarray(image, np.float32) / 255
    ramp = np.linspace(-1, 1, scene.height, dtype=np.float32)[:, None] * rng.uniform(-0.08, 0.08)
    pixels = pixels * (1 + ramp) + rng.standard_normal(pixels.shape, np.float32) * rng.uniform(0.01, 0.035)
    return np.clip(pixels, 0, 1)


def posterior_elements(body: Body, gap: float, reach: float) -> tuple[tuple[Point, ...], ...]:
    """Pedicle-lamina block and spinous process behind a body (lateral views); sizes in body widths."""
    _, tb, bb, _ = body.corners()
    x0, r, h = tb[0] + gap * body.w, reach * body.w, body.h_back
    lamina = ((x0, tb[1]), (x0 + r, tb[1] + 0.1 * h), (x0 + r, bb[1] - 0.1 * h), (x0, bb[1]))
    spinous = ((x0 + 0.8 * r, body.cy - 0.2 * h), (x0 + 1.7 * r, body.cy + 0.05 * h),
               (x0 + 1.65 * r, body.cy + 0.35 * h), (x0 + 0.8 * r, body.cy + 0.25 * h))
    return lamina, spinous


def xray_scene(spine: Spine) -> Scene:
    """Radiograph: soft tissue, posterior elements, bright bodies with a cortex, then the lesion shapes."""
    w, h = spine.width, spine.height
    scene = Scene(w, h, 0.04)
    lateral, cervical = spine.view == "lateral", spine.region == "cervical"
    first, last = spine.bodies[0], spine.bodies[-1]
    mid_x = (first.cx + last.cx) / 2 + (0.3 * first.w if lateral else 0)
    scene.add(oval(mid_x, h / 2, w * (0.42 if lateral else 0.47), h * 0.62), 0.17)
    if cervical:
        scene.add(oval(w * 0.62, -0.04 * h, w * 0.46, h * 0.15), 0.5)  # skull base
        scene.add(oval(w * 0.2, h * 0.14, w * 0.15, h * 0.07), 0.42)  # mandible
        scene.add(oval(w * 0.75, h * 1.02, w * 0.4, h * 0.1), 0.3)  # shoulder
    elif lateral:
        pelvis = oval(last.cx + 0.9 * last.w, last.cy + 0.3 * last.h_back, 0.8 * last.w, 0.9 * last.h_back)
        scene.add(pelvis, 0.27)
    for i, body in enumerate(spine.bodies):
        if body.name == "S1":
            tf, tb, bb, bf = body.corners()
            scene.add((bf, bb, (bb[0] + 0.2 * body.w, bb[1] + 1.2 * body.h_back)), 0.55)  # sacrum
            continue
        if lateral:
            for points in posterior_elements(body, 0.0, 0.55 if cervical else 0.6):
                scene.add(points, 0.43)
            if i + 1 < len(spine.bodies):
                (fx, fy), rx, ry = spine.foramen(i)
                scene.add(oval(fx, fy, rx, ry), 0.1)
        else:
            if not cervical:
                for side in (-1, 1):
                    scene.add(((body.cx + side * 0.45 * body.w, body.cy - 0.12 * body.h_back),
                               (body.cx + side * 0.95 * body.w, body.cy - 0.08 * body.h_back),
                               (body.cx + side * 0.95 * body.w, body.cy + 0.05 * body.h_back),
                               (body.cx + side * 0.45 * body.w, body.cy + 0.05 * body.h_back)), 0.45)
    for body in spine.bodies:
        if body.name == "S1" and lateral:
            scene.add(body.corners(), 0.6)
            continue
        corners = body.corners()
        scene.add(corners, 0.8)
        inset = [(body.cx + 0.85 * (x - body.cx), body.cy + 0.8 * (y - body.cy)) for x, y in corners]
        scene.add(inset, 0.62)
        if body.name == "C2":
            (x, y), r = dens_tip(body), 0.16 * body.w
            scene.add(((x - r, y + 0.6 * body.h_back), (x + r, y + 0.6 * body.h_back), (x + r * 0.8, y),
                       (x - r * 0.8, y)), 0.65)
        if not lateral and body.name != "S1":
            for side in (-1, 1):
                scene.add(oval(body.cx + side * 0.3 * body.w, body.cy - 0.15 * body.h_back, 0.1 * body.w,
                               0.17 * body.h_back), 0.85)
            scene.add(oval(body.cx, body.cy + 0.3 * body.h_back, 0.07 * body.w, 0.14 * body.h_back), 0.78)
    for _, _, shapes in spine.marks:
        scene.shapes.extend(shapes)
    return scene


def dens_tip(body: Body) -> Point:
    """Top of the odontoid peg drawn on C2 (a CSXA keypoint)."""
    tf, tb = body.top()
    return (tf[0] + 0.5 * (tb[0] - tf[0]), (tf[1] + tb[1]) / 2 - 0.6 * body.h_back)


# MR tissue brightness by weighting.
TISSUE = {
    "T1": {"body": 0.58, "disc": 0.32, "dark_disc": 0.22, "csf": 0.14, "fat": 0.85, "muscle": 0.3,
           "bulge": 0.1},
    "T2": {"body": 0.38, "disc": 0.75, "dark_disc": 0.3, "csf": 0.92, "fat": 0.62, "muscle": 0.24,
           "bulge": 0.12},
}


def canal_point(spine: Spine, i: int) -> Point:
    """Centre of the canal at the disc below body i: where the canal-stenosis coordinate sits."""
    x, y = spine.disc_back(i)
    return (x + 0.26 * spine.bodies[i].w, y)


def sagittal_scene(spine: Spine, weighting: str, kind: str, pinch: Sequence[float]) -> Scene:
    """Sagittal MR slice: kind mid | para (canal shown), foramen (foramina shown) or lateral (neither).

    pinch[i] in [0, 1] narrows the bright canal band (mid/para) or the foramen (foramen) below body i.
    """
    tissue = TISSUE[weighting]
    w, h = spine.width, spine.height
    scene = Scene(w, h, 0.03)
    scene.add(oval(w * 0.5, h * 0.5, w * 0.6, h * 0.7), tissue["fat"])
    scene.add(oval(w * 0.55, h * 0.5, w * 0.5, h * 0.66), tissue["muscle"])
    lumbar = [b for b in spine.bodies if b.name != "S1"]
    if kind in ("mid", "para"):
        reach = 0.42 if kind == "mid" else 0.26
        edge = [p for b in lumbar for p in b.corners()[1:3]] + [spine.bodies[-1].corners()[1]]
        near, far = 0.05 * lumbar[0].w, (0.05 + reach) * lumbar[0].w
        scene.add([(x + near, y) for x, y in edge] + [(x + far, y) for x, y in reversed(edge)], tissue["csf"])
        for body in lumbar:
            for points in posterior_elements(body, 0.05 + reach, 0.5):
                scene.add(points, tissue["body"] - 0.08)
        if kind == "mid":
            scene.add([canal_point(spine, i) for i in range(len(lumbar))], tissue["bulge"], 1)
        for i in range(len(lumbar)):
            x, y = spine.disc_back(i)
            depth = pinch[i] * reach * lumbar[i].w
            scene.add(oval(x, y, 0.05 * lumbar[i].w + depth, 0.3 * lumbar[i].h_back), tissue["bulge"])
            scene.add(oval(x + (0.05 + reach) * lumbar[i].w, y, 0.02 * lumbar[i].w + 0.45 * depth,
                           0.25 * lumbar[i].h_back), tissue["bulge"])  # ligamentum flavum
    for body in spine.bodies:
        scene.add(body.corners(), tissue["body"] if kind != "lateral" else tissue["muscle"] + 0.08)
    for i, body in enumerate(lumbar):
        lower = spine.bodies[i + 1]
        disc = tissue["dark_disc"] if pinch[i] > 0.4 else tissue["disc"]
        scene.add(body.bottom() + tuple(reversed(lower.top())), disc)
        if kind == "foramen":
            (fx, fy), rx, ry = spine.foramen(i)
            scene.add(oval(fx, fy, rx * (1 - 0.6 * pinch[i]), ry * (1.6 - 1.1 * pinch[i])), tissue["fat"])
            scene.add(oval(fx - 0.4 * rx, fy - 0.35 * ry, 0.3 * rx, 0.2 * ry), tissue["bulge"])  # nerve root
            pedicle = oval(fx + 0.05 * body.w, body.cy, 0.14 * body.w, 0.4 * body.h_back)
            scene.add(pedicle, tissue["body"] - 0.08)
    return scene


def foramen_point(spine: Spine, i: int) -> Point:
    return spine.foramen(i)[0]


@dataclass(frozen=True)
class Axial:
    """Geometry of one axial series: where body, canal and recesses sit (shared by its slices)."""

    width: int
    height: int
    cx: float
    body_y: float
    body_r: float
    canal_y: float
    canal_r: float

    def recess(self, side: int) -> Point:
        """Lateral recess centre; side +1 = patient left, drawn on the image right (radiological view)."""
        return (self.cx + side * 1.15 * self.canal_r, self.canal_y - 0.2 * self.canal_r)


def axial_geometry(rng: np.random.Generator, width: int, height: int) -> Axial:
    body_r = width * rng.uniform(0.14, 0.17)
    cx, body_y = width * rng.uniform(0.47, 0.53), height * rng.uniform(0.33, 0.38)
    return Axial(width, height, cx, body_y, body_r, body_y + body_r * 1.45, body_r * 0.42)


def axial_scene(geo: Axial, at_disc: bool, canal: float, left: float, right: float) -> Scene:
    """Axial T2 slice at a disc (or through a body); the pinch values narrow canal and recesses."""
    tissue = TISSUE["T2"]
    w, h, cx, r = geo.width, geo.height, geo.cx, geo.canal_r
    scene = Scene(w, h, 0.03)
    scene.add(oval(cx, h * 0.52, w * 0.46, h * 0.42), tissue["fat"])
    scene.add(oval(cx, h * 0.55, w * 0.4, h * 0.36), tissue["muscle"])
    for side in (-1, 1):
        scene.add(oval(cx + side * geo.body_r * 1.5, geo.body_y + 0.2 * geo.body_r, geo.body_r * 0.55,
                       geo.body_r * 0.5), tissue["muscle"] + 0.06)  # psoas
    scene.add(oval(cx, geo.body_y, geo.body_r, geo.body_r * 0.8), tissue["disc" if at_disc else "body"])
    scene.add(oval(cx, geo.canal_y + 1.9 * r, 0.35 * r, 1.2 * r), tissue["body"])  # spinous process
    scene.add(oval(cx, geo.canal_y, r * (1 - 0.55 * canal), r * 0.75 * (1 - 0.55 * canal)), tissue["csf"])
    for side, pinch in ((1, left), (-1, right)):
        x, y = geo.recess(side)
        scene.add(oval(x, y, 0.38 * r * (1 - 0.7 * pinch), 0.3 * r * (1 - 0.6 * pinch)), tissue["csf"])
        scene.add(oval(x + side * (0.75 - 0.45 * pinch) * r, y + 0.55 * r, 0.5 * r, 0.45 * r),
                  tissue["body"] - 0.05)  # facet joint, pressing into the recess when pinched
    for dx in (-0.3, 0.0, 0.3):
        scene.add(oval(cx + dx * r, geo.canal_y + 0.25 * r, 0.08 * r, 0.08 * r), tissue["bulge"] + 0.2)
    return scene


# --- writers ------------------------------------------------------------------------------------------

def to_uint(pixels: np.ndarray, low: int, high: int) -> np.ndarray:
    """Map [0, 1] onto [low, high] as uint16."""
    return np.round(low + pixels * (high - low)).astype(np.uint16)


def save_image(path: Path, pixels: np.ndarray, mode: str) -> None:
    """JPEG or PNG from [0, 1] pixels; mode L, RGB (gray copied to 3 channels) or I;16 (16-bit PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        image = Image.fromarray(to_uint(pixels, 0, 65535))
    else:
        image = Image.fromarray(to_uint(pixels, 0, 255).astype(np.uint8)).convert(mode)
    image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)


def dicom_fields(tags: dict[str, Any], syntax: str = ExplicitVRLittleEndian) -> dict[str, Any]:
    """The manifest's description of a DICOM, taken from the tags it is written with (never read back)."""
    if "VOILUTSequence" in tags:
        voi = "lut"
    elif "WindowCenter" in tags:
        voi = "window-multi" if isinstance(tags["WindowCenter"], list) else "window"
    else:
        voi = "none"
    rescale = None
    if "RescaleSlope" in tags:
        rescale = [float(tags["RescaleSlope"]), float(tags["RescaleIntercept"])]
    return {"dicom_modality": tags["Modality"], "photometric": tags["PhotometricInterpretation"],
            "bits_stored": int(tags["BitsStored"]), "voi": voi, "transfer_syntax": str(syntax),
            "rescale": rescale}


def voi_lut(first: int, data: Sequence[int]) -> DicomSequence:
    """A one-item VOI LUT sequence, 16-bit entries, mapping stored values from `first` on."""
    item = Dataset()
    item.LUTDescriptor = [len(data), first, 16]
    item.add_new("LUTData", "US", list(data))
    return DicomSequence([item])


def write_dicom(path: Path, pixels: np.ndarray, tags: dict[str, Any], syntax: str = ExplicitVRLittleEndian,
                truncate: bool = False, codestream_bits: int | None = None) -> None:
    """One single-frame grey DICOM with fake PHI; compressed when syntax asks, cut inside the pixels
    when truncate (a broken download). A VOILUTSequence tag is given as (first, entries): datasets
    do not pickle, and jobs may run in worker processes. `codestream_bits`: compress at this precision,
    then write the header's BitsStored (as some released JPEG 2000 files disagree with their header)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    # values as releases write them (hex ids in UID tags, 'L-SPINE'), which pydicom would warn about
    with pydicom_config.disable_value_validation():
        ds.file_meta.MediaStorageSOPClassUID = tags["SOPClassUID"]
        ds.file_meta.MediaStorageSOPInstanceUID = tags["SOPInstanceUID"]
        for keyword, value in {**tags, **PHI_MARKERS}.items():
            setattr(ds, keyword, voi_lut(*value) if keyword == "VOILUTSequence" else value)
        ds.SamplesPerPixel = 1
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.HighBit, ds.PixelRepresentation = 16, int(tags["BitsStored"]) - 1, 0
        ds.PixelData = pixels.astype("<u2").tobytes()
        if codestream_bits:
            ds.BitsStored, ds.HighBit = codestream_bits, codestream_bits - 1
        if syntax != ExplicitVRLittleEndian:
            plugin = "pylibjpeg" if syntax == JPEG2000Lossless else ""
            ds.compress(syntax, encoding_plugin=plugin, generate_instance_uid=False)
        ds.BitsStored, ds.HighBit = int(tags["BitsStored"]), int(tags["BitsStored"]) - 1
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - pixels.nbytes // 2])
