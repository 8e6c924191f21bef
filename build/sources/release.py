"""A release root as the download left it: a folder, or a folder inside a zip archive, found by signature.

`RAW/<source>` holds whatever the maintainer downloaded: the release unzipped (at any depth: PhysioNet's
`wget -r` mirror puts VinDr four levels down), or still the zip archive(s). `locate` walks the folder
(bounded depth, never following a symlink that leads outside it) and the zip files it meets, and tests
every folder and every member folder against the reader's signature. One match is the release; none,
or two (a zip next to its unzipped copy), is a `SourceError` that names what was found.

A `Release` is the one handle readers and image workers share: paths are relative to its root (so they do
not depend on the layout), `shown()` names a file for reports (relative to RAW/<source>, a zip member
as `<archive>.zip/<member>`), and it pickles as three strings, so a worker reopens the archive itself.
Inside a folder release, a path may also pass through one zip file (CSXA ships its images and JSON as two
zips next to the workbook). Zip member names are checked like paths: no `..`, no absolute or drive
names, no member larger than MAX_MEMBER_BYTES; a refused member is reported and never read.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from build.report import StageReport
from build.sources.common import outside

MAX_DEPTH = 6  # folders between RAW/<source> and the release root (wget: physionet.org/files/<name>/<version>)
MAX_MEMBER_BYTES = 1 << 30  # a zip member larger than this (uncompressed) is refused, never inflated
ZIP = ".zip"

Signature = Callable[["Release"], bool]  # does this candidate root hold the release?


class SourceError(Exception):
    """A source cannot be read: not found, found twice, or its configuration does not fit the files."""


@dataclass(frozen=True)
class Release:
    """The root of one release: `folder/root` on disk, or the member folder `root` of `folder/archive`."""

    folder: Path  # RAW/<source>: the boundary nothing may leave, and what report paths are relative to
    root: str = ""  # posix, "" or "a/b"
    archive: str | None = None  # the zip holding the release, relative to `folder`

    @property
    def layout(self) -> str:
        """zip, folder, or folder + the zips beside its files (read as if unzipped in place)."""
        if self.archive:
            return "zip"
        zips = _beside(self.folder / self.root)
        return f"folder + {', '.join(Path(z).name for z in zips)}" if zips else "folder"

    def shown(self, rel: str = "") -> str:
        """`rel` as reports name it: relative to RAW/<source>, posix; "." for the source folder itself. A
        member of a zip beside the files is named through the zip (`CSXA/datasets-PNG.zip/...`)."""
        archive = self.archive
        if archive is None and rel:
            beside = self._beside(rel)
            if beside is not None:
                archive = Path(beside).relative_to(self.folder).as_posix()
                return f"{archive}/{rel}"
        return "/".join(part for part in (archive, self.root, rel) if part) or "."

    # --- files ---------------------------------------------------------------------------------------

    def path(self, rel: str) -> Path | None:
        """The file on disk, or None when it lives inside a zip."""
        return None if self._member(rel)[0] else self.folder / self.root / rel

    def problem(self, rel: str) -> str | None:
        """Why `rel` may not be read (a symlink leading outside RAW/<source>, a loop), or None."""
        path = self.path(rel)
        return None if path is None else outside(path, self.folder)

    def is_file(self, rel: str) -> bool:
        archive, member = self._member(rel)
        if archive is None:
            return (self.folder / self.root / rel).is_file()
        return member in _index(archive).files

    def is_dir(self, rel: str) -> bool:
        archive, member = self._member(rel)
        if archive is None:
            return (self.folder / self.root / rel).is_dir()
        return member in _index(archive).folders

    def names(self, rel: str = "") -> list[str]:
        """Entry names directly inside folder `rel`, sorted; [] when it is not a folder. In a folder
        release, the zips beside the files count as unzipped in place (their own names are left out)."""
        if self.archive:
            return sorted(_index(self.folder / self.archive).children.get(self._member(rel)[1], ()))
        try:
            found = {entry.name for entry in os.scandir(self.folder / self.root / rel)}
        except OSError:
            found = set()
        zips = _beside(self.folder / self.root)
        if not rel:
            found -= {Path(path).name for path in zips}
        for path in zips:
            found |= _index(Path(path)).children.get(rel, set())
        return sorted(found)

    def files(self, rel: str = "") -> Iterator[str]:
        """Every file below folder `rel` (release-relative, sorted per folder). Symlinks that lead outside
        RAW/<source> are skipped (readers meet and report them where a file is expected)."""
        for name in self.names(rel):
            child = f"{rel}/{name}" if rel else name
            if self.is_dir(child):
                if self.problem(child) is None:
                    yield from self.files(child)
            else:
                yield child

    def open(self, rel: str) -> BinaryIO:
        archive, member = self._member(rel)
        if archive is None:
            return open(self.folder / self.root / rel, "rb")
        if member not in _index(archive).files:
            raise FileNotFoundError(f"no member {member!r} in {archive.name}")
        return _index(archive).zip.open(member)

    def read_bytes(self, rel: str) -> bytes:
        with self.open(rel) as handle:
            return handle.read()

    def pixels(self, rel: str) -> Path | bytes:
        """What imaging.standardize_file takes: the file on disk, or a zip member's bytes."""
        return self.path(rel) or self.read_bytes(rel)

    def _member(self, rel: str) -> tuple[Path | None, str]:
        """(zip file, member name) for a path inside a zip, else (None, "")."""
        if self.archive:
            return self.folder / self.archive, "/".join(p for p in (self.root, rel) if p)
        beside = self._beside(rel)
        return (Path(beside), rel) if beside else (None, "")

    def _beside(self, rel: str) -> str | None:
        """The zip beside the files that holds `rel`, when `rel` is not on disk."""
        zips = _beside(self.folder / self.root)
        if not zips or os.path.lexists(self.folder / self.root / rel):
            return None
        index = (_index(Path(path)) for path in zips)
        return next((path for path, found in zip(zips, index) if rel in found.files or rel in found.folders),
                    None)


@lru_cache(maxsize=64)
def _beside_cached(root: str, stamp: float) -> tuple[str, ...]:
    try:
        return tuple(sorted(entry.path for entry in os.scandir(root)
                            if entry.name.lower().endswith(ZIP) and entry.is_file()
                            and zipfile.is_zipfile(entry.path)))
    except OSError:
        return ()


def _beside(root: Path) -> tuple[str, ...]:
    """The zip archives directly in a folder release's root (CSXA's two zips next to its workbook)."""
    try:
        stamp = root.stat().st_mtime
    except OSError:
        return ()
    return _beside_cached(str(root), stamp)


# --- zip archives ----------------------------------------------------------------------------------------


@dataclass
class ZipIndex:
    """An open archive and its accepted members; `refused` lists (member, reason) never to be read."""

    zip: zipfile.ZipFile
    files: dict[str, zipfile.ZipInfo] = field(default_factory=dict)
    folders: set[str] = field(default_factory=lambda: {""})
    children: dict[str, set[str]] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member may not be read: a name that would leave the archive's folder, or too large a size."""
    name = info.filename
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ".." in parts or (len(name) > 1 and name[1] == ":"):
        return "unsafe member name (absolute, drive letter, backslash or '..'): refused, not read"
    if not info.is_dir() and info.file_size > MAX_MEMBER_BYTES:
        return f"member of {info.file_size:,} bytes exceeds the limit of {MAX_MEMBER_BYTES:,}: refused, not read"
    return None


def _index(path: Path) -> ZipIndex:
    return _open_index(str(path), os.getpid())  # a forked worker must not share its parent's file offset


@lru_cache(maxsize=16)
def _open_index(path: str, pid: int) -> ZipIndex:
    index = ZipIndex(zipfile.ZipFile(path))
    for info in index.zip.infolist():
        problem = member_problem(info)
        if problem:
            index.refused.append((info.filename, problem))
            continue
        name = info.filename.rstrip("/")
        if not name:
            continue
        parts = name.split("/")
        for depth in range(len(parts)):
            parent, child = "/".join(parts[:depth]), parts[depth]
            index.children.setdefault(parent, set()).add(child)
            if depth < len(parts) - 1 or info.is_dir():
                index.folders.add("/".join(parts[: depth + 1]))
        if not info.is_dir():
            index.files[name] = info
    return index


# --- finding the release ----------------------------------------------------------------------------------


@dataclass
class Search:
    """What a search met: matching roots, symlinked folders it refused, archives it could not open."""

    found: list[Release] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (shown path, reason)


def search(folder: Path, signature: Signature) -> Search:
    """Every folder and zip member folder within MAX_DEPTH of `folder` that matches `signature`; nothing
    below a match is searched (a release holds no second release)."""
    result = Search()
    _search_folder(folder, "", 0, signature, result, set())
    return result


def _search_folder(folder: Path, rel: str, depth: int, signature: Signature, result: Search,
                   seen: set[tuple[int, int]]) -> None:
    here = folder / rel
    try:
        info = here.stat()
    except OSError:
        return
    if (info.st_dev, info.st_ino) in seen:  # a symlink back up the tree: searched once
        return
    seen.add((info.st_dev, info.st_ino))
    candidate = Release(folder, rel)
    if signature(candidate):
        result.found.append(candidate)
        return
    if depth >= MAX_DEPTH:
        return
    try:
        names = sorted(entry.name for entry in os.scandir(here))
    except OSError:
        return
    for name in names:
        child = f"{rel}/{name}" if rel else name
        path = folder / child
        if name.startswith("."):
            continue
        problem = outside(path, folder) if path.is_symlink() else None
        if problem is not None:
            if path.is_dir() or not path.exists():
                result.refused.append((child, f"{problem}: folder refused, not searched"))
            continue
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            _search_folder(folder, child, depth + 1, signature, result, seen)
        elif stat.S_ISREG(mode) and name.lower().endswith(ZIP):
            _search_archive(folder, child, signature, result)


def _search_archive(folder: Path, archive: str, signature: Signature, result: Search) -> None:
    try:
        index = _index(folder / archive)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        result.refused.append((archive, f"unreadable zip archive, not searched: {exc}"))
        return
    matched: list[str] = []
    for root in sorted(name for name in index.folders if name.count("/") < MAX_DEPTH):
        if any(m == "" or root.startswith(m + "/") for m in matched):
            continue  # below a release found already
        if signature(Release(folder, root, archive)):
            matched.append(root)
            result.found.append(Release(folder, root, archive))
    for name, reason in index.refused:
        result.refused.append((f"{archive}/{name}", reason))


def locate(folder: Path, source: str, signature: Signature, describe: str,
           report: StageReport | None = None) -> Release:
    """The one release of `source` inside `folder`; SourceError naming what is wrong otherwise.

    `describe` says what the signature looks for, for the message. Refused folders and members go to
    `report` as rejections (they are not searched or read).
    """
    if not folder.is_dir():
        raise SourceError(f"{source}: source folder {folder} not found (point RAW/{source} at the download)")
    found = search(folder, signature)
    if report is not None:
        for shown, reason in found.refused:
            report.reject(source, shown, reason)
    if not found.found:
        raise SourceError(f"{source}: release not found in {folder}: no {describe} in the folder, up to "
                          f"{MAX_DEPTH} levels below it, or in a zip archive there")
    if len(found.found) > 1:
        names = " and ".join(f"{folder / r.shown()}" for r in found.found)
        raise SourceError(f"{source}: two candidate release roots, {names}: keep one (e.g. remove the zip "
                          "you already unzipped)")
    release = found.found[0]
    if report is not None and release.archive is None:  # the zips beside its files were not searched
        for archive in _beside(folder / release.root):
            shown = Path(archive).relative_to(folder).as_posix()
            for name, reason in _index(Path(archive)).refused:
                report.reject(source, f"{shown}/{name}", reason)
    return release

