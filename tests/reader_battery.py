"""One battery of checks every release reader must pass, in the style of torchvision's DatasetTestCase.

Each tests/test_source_<name>.py subclasses ReaderBattery (a class pytest collects only through a
`Test...` subclass) and says what differs for its source. The checks run on one replica tree written by
the generator for the whole session and compare the reader with the generator's manifest, never with the
reader's own output:
- smoke: the reader yields SourceRecords of its source, each naming a file of the release, ids unique;
- counts: exactly the planted images, plus the planted cases only later stages can see (LATER);
- facts: the file and the fields the manifest records (FACTS) as planted;
- not found: an empty or absent folder is a SourceError naming the source;
- corrupted: garbage bytes in the source's table (TABLE) are refused with the file named, as a SourceError
  or as rejections in the report, and never as a traceback.
"""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path, PurePosixPath
from typing import ClassVar

import pytest

from build import sources
from build.records import SourceRecord
from build.replicas import generate
from build.report import StageReport
from build.sources import Release, SourceError

SCALE = 0.25  # a few images per source, every planted case
GARBAGE = b"\x00\xff\xfe\x89PNG not a table \xc3\x28\n"


@cache
def replica(root: Path) -> tuple[Path, dict]:
    """The session's replica tree (written once, then only read) and its manifest."""
    return root, generate(root, scale=SCALE, seed=0)


def read(folder: Path, source: str) -> tuple[Release, list[SourceRecord], StageReport]:
    report = StageReport("ingest")
    release = sources.find(source, folder, report)
    return release, list(sources.READERS[source](release, report)), report


class ReaderBattery:
    SOURCE: ClassVar[str]
    TABLE: ClassVar[str]  # glob, under the source folder, of the annotation table the corrupted check breaks
    LATER: ClassVar[frozenset[str]] = frozenset()  # edge-case kinds the reader passes on (pixels, label map)
    FACTS: ClassVar[tuple[str, ...]] = ("patient_id", "modality", "region", "view", "sex", "age")

    @pytest.fixture(scope="class")
    def tree(self, tmp_path_factory) -> tuple[Path, dict]:
        return replica(tmp_path_factory.getbasetemp() / "reader_battery")

    @pytest.fixture(scope="class")
    def release(self, tree) -> tuple[Release, list[SourceRecord]]:
        root, _ = tree
        return read(root / self.SOURCE, self.SOURCE)[:2]

    @pytest.fixture(scope="class")
    def records(self, release) -> list[SourceRecord]:
        return release[1]

    def planted(self, manifest: dict) -> dict[str, dict]:
        return {image["image_key"]: image for image in manifest["images"] if image["source"] == self.SOURCE}

    def test_smoke(self, release, records):
        assert records, f"{self.SOURCE}: no records from the replica"
        assert all(isinstance(record, SourceRecord) and record.source == self.SOURCE for record in records)
        assert all(release[0].is_file(record.path) for record in records)
        assert len({record.image_id for record in records}) == len(records)

    def test_counts_match_the_manifest(self, tree, records):
        _, manifest = tree
        later = {case["image_key"] for case in manifest["edge_cases"]
                 if case["source"] == self.SOURCE and case["kind"] in self.LATER}
        assert later or not self.LATER, f"the replica plants none of {sorted(self.LATER)}"
        expected = set(self.planted(manifest)) | later
        assert sorted(record.image_key for record in records) == sorted(expected)
        assert len(self.planted(manifest)) == manifest["counts"]["images_by_source"][self.SOURCE]

    def test_facts_match_the_manifest(self, tree, release, records):
        planted = self.planted(tree[1])
        for record in records:
            if record.image_key in planted:
                image = planted[record.image_key]
                assert release[0].shown(record.path) == image["path"]
                assert {f: getattr(record, f) for f in self.FACTS} == {f: image[f] for f in self.FACTS}

    @pytest.mark.parametrize("make", [True, False], ids=["empty", "absent"])
    def test_not_found(self, tmp_path, make):
        folder = tmp_path / self.SOURCE
        if make:
            folder.mkdir()
        with pytest.raises(SourceError) as raised:
            read(folder, self.SOURCE)
        assert self.SOURCE in str(raised.value).lower()

    def test_corrupted_table(self, tree, tmp_path):
        root, _ = tree
        folder = shutil.copytree(root / self.SOURCE, tmp_path / self.SOURCE)
        table = sorted(folder.glob(self.TABLE))[0]
        table.write_bytes(GARBAGE)
        shown = PurePosixPath(table.relative_to(folder).as_posix())
        try:
            *_, report = read(folder, self.SOURCE)
        except SourceError as error:
            assert shown.name in str(error)
        else:
            assert any(PurePosixPath(issue.path) == shown for issue in report.rejected), report.rejected
