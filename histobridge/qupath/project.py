"""Open a QuPath project folder without QuPath: images, classes, annotations, pixel sizes.

A project that cannot be read at all raises :class:`ProjectError`. A single image that cannot be
found or honoured does not: its :class:`ImageEntry` carries ``found=False`` or a ``problem``, so
one broken path never hides the other images.

Relocation follows QuPath (qupath-formats.md §8): an image path that does not exist is re-resolved
relative to where the project was saved (the qpproj ``uri``) and where it is now, then searched
for by file name near the project.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PureWindowsPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from histobridge.errors import CalibrationError, ProjectError, SlideNotFoundError
from histobridge.qupath import layout
from histobridge.qupath.annotations import AnnotationSet, PathClass
from histobridge.qupath.classes import read_classes
from histobridge.qupath.servers import ServerInfo, is_openslide, resolve_server, uri_to_path

if TYPE_CHECKING:
    from histobridge.slides import Slide

log = logging.getLogger(__name__)

SOURCES = ("auto", "qpdata", "geojson", "paquo")
SEARCH_DEPTH = 4
SEARCH_MAX_DIRS = 5000
SKIP_DIRS = frozenset({"data", "classifiers", "histobridge", ".git", "__pycache__", "node_modules"})
OPENSLIDE_ONLY_SUFFIXES = (".mrxs", ".vms", ".vmu")


@dataclass(frozen=True)
class ImageEntry:
    """One image of a project, with its file resolved on this machine (or why it is not)."""

    entry_id: int
    name: str
    uri: str
    path: Path | None
    found: bool
    problem: str | None = None
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tags: tuple[str, ...] = ()
    provider: str | None = None
    args: tuple[str, ...] = ()
    mpp_override: float | None = None
    crop_to_bounds: bool = False
    crop_region: tuple[float, float, float, float] | None = None
    builder_chain: tuple[str, ...] = ("uri",)
    relocated_from: str | None = None

    def qupath_frame(self, slide: Slide) -> tuple[tuple[float, float], tuple[int, int] | None]:
        """(offset, size) mapping QuPath pixels onto the reader's pixels for an uncropped ``slide``.

        OpenSlide bounds cropping applies only when both bound sizes differ from level 0
        (qupath-formats.md §10); a ``cropped`` server adds its region on top.
        """
        ox = oy = 0.0
        size: tuple[int, int] | None = None
        bounds = slide.reader_bounds if self.crop_to_bounds else None
        if bounds is not None:
            bx, by, bw, bh = bounds
            full_w, full_h = slide.dimensions
            if bw != full_w and bh != full_h:
                ox, oy, size = float(bx), float(by), (int(bw), int(bh))
        if self.crop_region is not None:
            rx, ry, rw, rh = self.crop_region
            ox, oy, size = ox + rx, oy + ry, (round(rw), round(rh))
        return (ox, oy), size

    def open_slide(
        self,
        mpp: float | None = None,
        *,
        fill_mpp: float | None = None,
        require_mpp: bool = True,
        backend: str = "auto",
    ) -> Slide:
        """Open the image in QuPath's pixel space (bounds offset applied).

        Pixel size, first known wins: ``mpp`` (an explicit override of everything), the project's
        calibration (QuPath's Set pixel size), the file's own, then ``fill_mpp`` (a default for
        files that record none). ``slide.mpp_source`` says which: ``"argument"``, ``"project"``,
        ``"slide"`` or ``"fill-in"``. When ``require_mpp`` and none is known,
        :class:`CalibrationError` names the image and says once how to give it.
        """
        from histobridge.slides import open_slide

        label = f"image {self.entry_id} ({self.name!r})"
        if not self.found or self.path is None:
            raise SlideNotFoundError(f"{label}: {self.problem or 'image file not found'}")
        if self.problem:
            raise ProjectError(f"{label}: {self.problem}")
        chosen, source = self._chosen_mpp(mpp)
        slide = open_slide(self.path, backend=backend, mpp=chosen)
        if chosen is None and slide.mpp_or_none is None and fill_mpp is not None:
            chosen, source = fill_mpp, "fill-in"
        offset, size = self.qupath_frame(slide)
        if offset != (0.0, 0.0) or size is not None or (chosen is not None and slide.mpp_or_none != chosen):
            slide.close()
            slide = open_slide(self.path, backend=backend, mpp=chosen, offset=offset, size=size)
        slide.mpp_source = source
        if require_mpp and slide.mpp_or_none is None:
            why = slide.mpp_problem or f"{self.path}: the file records no pixel size"
            slide.close()
            raise CalibrationError(
                f"{label}: {why}. Give it with --mpp <µm per pixel>, or set it in QuPath "
                "(Image tab, Pixel width/height) and save the project"
            )
        return slide

    def _chosen_mpp(self, mpp: float | None) -> tuple[float | None, str]:
        if mpp is not None:
            return mpp, "argument"
        if self.mpp_override is not None:
            return self.mpp_override, "project"
        return None, "slide"

    def mpp_source(self, mpp: float | None = None) -> str:
        """Where the pixel size comes from before the file is read: ``"argument"``, ``"project"`` or
        ``"slide"`` (a file without one then takes ``fill_mpp``, see :meth:`open_slide`)."""
        return self._chosen_mpp(mpp)[1]


@dataclass
class Project:
    """A QuPath project read from disk; ``path`` is the ``.qpproj`` file, ``folder`` its folder."""

    path: Path
    folder: Path
    images: list[ImageEntry]
    classes: list[PathClass]
    version: str | None = None
    uri: str | None = None
    notes: list[str] = field(default_factory=list)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, search: bool = True) -> Project:
        """Read a project from its folder or its ``.qpproj`` file.

        ``search=False`` skips the by-name search for moved images (faster on huge trees).
        """
        qpproj = find_project_file(Path(path).expanduser())
        raw = _load_qpproj(qpproj)
        folder = qpproj.parent.absolute()
        locator = _Locator(folder, raw.get("uri") if isinstance(raw.get("uri"), str) else None, search)
        items = raw.get("images") or []
        if not isinstance(items, list):
            raise ProjectError(f"{qpproj}: 'images' must be a list, found {type(items).__name__}")
        images = [_read_entry(item, i, qpproj, locator) for i, item in enumerate(items)]
        ids = [e.entry_id for e in images]
        notes = []
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            notes.append(f"{qpproj}: duplicate entryID(s) {dupes}; their data folders are shared")
        for key in ("createTimestamp", "modifyTimestamp"):
            if key not in raw:
                notes.append(f"{qpproj}: '{key}' is missing; QuPath itself would refuse to open this project")
        return cls(
            path=qpproj.absolute(), folder=folder, images=images,
            classes=read_classes(layout.classes_path(folder)),
            version=raw.get("version") if isinstance(raw.get("version"), str) else None,
            uri=locator.old_uri, notes=notes, raw=raw,
        )

    def image(self, key: int | str) -> ImageEntry:
        """The entry with this id (int or digit string) or image name."""
        for e in self.images:
            if e.entry_id == key or str(e.entry_id) == str(key) or e.name == key:
                return e
        known = ", ".join(str(e.entry_id) for e in self.images[:30])
        known += ", …" if len(self.images) > 30 else ""
        raise ProjectError(f"{self.path}: no image {key!r} (known: {known})")

    def annotations(
        self, entry: ImageEntry | int | str, *, source: str = "auto",
        object_types: Collection[str] | None = ("annotation",),
    ) -> AnnotationSet:
        """The objects drawn on one image (annotations by default).

        ``auto`` reads ``data/<id>/data.qpdata``, else the GeoJSON export in the histobridge
        layout, else returns an empty set with a note. ``qpdata``/``geojson``/``paquo`` force one
        source and raise when it is unavailable.
        """
        from histobridge.qupath.sources import read_entry_annotations

        if source not in SOURCES:
            raise ProjectError(f"annotation source must be one of {', '.join(SOURCES)}, not {source!r}")
        e = entry if isinstance(entry, ImageEntry) else self.image(entry)
        return read_entry_annotations(self, e, source=source, object_types=object_types)

    def class_names(self) -> list[str]:
        """Names of the project's classes, in ``classes.json`` order."""
        return [c.name for c in self.classes]


def find_project_file(path: Path) -> Path:
    """The ``.qpproj`` to read for a folder or file path (``project.qpproj`` preferred)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise ProjectError(f"{path}: no such QuPath project folder or .qpproj file")
    preferred = path / layout.PROJECT_FILE
    if preferred.is_file():
        return preferred
    found = sorted(p for p in path.glob("*.qpproj") if p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise ProjectError(f"{path}: not a QuPath project (no .qpproj file in this folder)")
    names = ", ".join(p.name for p in found)
    raise ProjectError(f"{path}: several project files ({names}); give the one to open")


def _load_qpproj(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProjectError(f"{path}: cannot read QuPath project file: {err}") from err
    if not isinstance(doc, dict):
        raise ProjectError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    if "version" not in doc and "lastID" not in doc:
        raise ProjectError(f"{path}: neither 'version' nor 'lastID' present; not a QuPath project file")
    return doc


def _str_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        return MappingProxyType({})
    return MappingProxyType({str(k): str(v) for k, v in value.items() if v is not None})


def _read_entry(item: Any, index: int, qpproj: Path, locator: _Locator) -> ImageEntry:
    if not isinstance(item, Mapping):
        raise ProjectError(f"{qpproj}: images[{index}] is not an object")
    entry_id = item.get("entryID")
    if isinstance(entry_id, bool) or not isinstance(entry_id, int):
        raise ProjectError(f"{qpproj}: images[{index}] has no integer 'entryID' ({entry_id!r})")
    name = item.get("imageName") if isinstance(item.get("imageName"), str) else f"Image {entry_id}"
    info = resolve_server(item.get("serverBuilder"), f"image {entry_id}")
    path, relocated, missing = locator.locate(info.uri)
    found = path is not None
    problem = missing if not found else info.problem
    tags = item.get("tags") if isinstance(item.get("tags"), list) else []
    return ImageEntry(
        entry_id=entry_id, name=name, uri=info.uri or "", path=path, found=found, problem=problem,
        description=item.get("description") if isinstance(item.get("description"), str) else None,
        metadata=_str_map(item.get("metadata")), tags=tuple(str(t) for t in tags),
        provider=info.provider, args=info.args, mpp_override=info.mpp_override,
        crop_to_bounds=_crops_to_bounds(info, path), crop_region=info.crop_region,
        builder_chain=info.chain, relocated_from=relocated,
    )


def _crops_to_bounds(info: ServerInfo, path: Path | None) -> bool:
    """OpenSlide reader without ``--no-crop`` (or no reader named, for OpenSlide-only formats)."""
    if "--no-crop" in info.args:
        return False
    if info.provider is None:
        return path is not None and path.name.lower().endswith(OPENSLIDE_ONLY_SUFFIXES)
    return is_openslide(info.provider)


class _Locator:
    """Finds image files for one project: as stored, relative to a moved project, then by name."""

    def __init__(self, folder: Path, old_uri: str | None, search: bool) -> None:
        self.folder = folder
        self.old_uri = old_uri
        old = uri_to_path(old_uri) if old_uri else None
        self.old_folder = old.parent if old is not None else None
        self.search = search
        self._index: dict[str, list[Path]] | None = None

    def locate(self, uri: str | None) -> tuple[Path | None, str | None, str | None]:
        """(path, original path if relocated, problem if not found)."""
        if not uri:
            return None, None, "no image URI in the project"
        stored = uri_to_path(uri)
        if stored is None:
            return None, None, f"image URI {uri!r} is not a local file (only file: URIs can be read)"
        if not isinstance(stored, PureWindowsPath) and Path(stored).is_file():
            return Path(stored), None, None
        tried = [str(stored)]
        moved = self._relative_to_moved_project(stored)
        if moved is not None and str(moved) != str(stored):
            if moved.is_file():
                return moved, str(stored), None
            tried.append(str(moved))
        hit = self._search(stored.name)  # below the project, then beside it
        if hit is not None:
            return hit, str(stored), None
        where = f"; also searched for {stored.name!r} in and beside {self.folder}" if self.search else ""
        return None, None, f"image file not found: {' or '.join(tried)}{where}"

    def _relative_to_moved_project(self, stored: PurePath) -> Path | None:
        """Apply the project's own move to the image path (QuPath's UriUpdater rule)."""
        old = self.old_folder
        if old is None or type(old) is not type(stored):
            return None
        fold = (lambda s: s.lower()) if isinstance(old, PureWindowsPath) else (lambda s: s)
        a, b = [fold(p) for p in old.parts], [fold(p) for p in stored.parts]
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        if k == 0:
            return None
        rel = [".."] * (len(a) - k) + list(stored.parts[k:])
        return Path(os.path.normpath(self.folder.joinpath(*rel)))

    def _search(self, name: str) -> Path | None:
        if not self.search or not name:
            return None
        if self._index is None:
            self._index = _index_files(self.folder, SEARCH_DEPTH, SEARCH_MAX_DIRS)
            for key, paths in _index_files(self.folder.parent, 2, SEARCH_MAX_DIRS // 5).items():
                self._index.setdefault(key, []).extend(p for p in paths if p not in self._index.get(key, []))
        hits = self._index.get(name) or self._index.get(name.lower())
        if not hits:
            return None
        if len(hits) > 1:
            log.warning("%d files named %s below %s; using %s", len(hits), name, self.folder, hits[0])
        return hits[0]


def _index_files(root: Path, depth: int, max_dirs: int) -> dict[str, list[Path]]:
    """File name → paths below ``root`` (breadth first, bounded), plus lower-case keys."""
    index: dict[str, list[Path]] = {}
    frontier, visited = [(root, 0)], 0
    while frontier and visited < max_dirs:
        folder, d = frontier.pop(0)
        visited += 1
        try:
            children = sorted(folder.iterdir())
        except OSError:
            continue
        for child in children:
            if child.is_dir():
                if d < depth and child.name not in SKIP_DIRS and not child.name.startswith("."):
                    frontier.append((child, d + 1))
            elif child.is_file():
                index.setdefault(child.name, []).append(child)
                if child.name.lower() != child.name:
                    index.setdefault(child.name.lower(), []).append(child)
    return index


__all__ = ["SOURCES", "ImageEntry", "Project", "find_project_file"]
