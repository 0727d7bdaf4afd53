"""Open a QuPath project folder without QuPath: images, classes, annotations, pixel sizes.

A project that cannot be read at all raises :class:`ProjectError`. A single image that cannot be
found or honoured does not: its :class:`ImageEntry` carries ``found=False`` or a ``problem``, so
one broken path never hides the other images.

Relocation follows QuPath: an image path that does not exist is re-resolved
relative to where the project was saved (the qpproj ``uri``) and where it is now, then searched
for by file name near the project. A file found that way must have the size QuPath stored for the
image (``serverBuilder.metadata``, else ``summary.json``); a same-named file of another size is
refused as a different image.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PureWindowsPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from histobridge.errors import CalibrationError, ProjectError, SlideNotFoundError
from histobridge.qupath import layout
from histobridge.qupath.annotations import AnnotationSet, PathClass
from histobridge.qupath.classes import read_classes
from histobridge.qupath.servers import ServerInfo, is_openslide, resolve_server, uri_to_path
from histobridge.qupath.sources import StoredSummary, read_summary

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
        (as in QuPath's OpenSlide server); a ``cropped`` server adds its region on top.
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
        _check_unique_ids(items, qpproj)
        images = [_read_entry(item, i, qpproj, locator) for i, item in enumerate(items)]
        notes = []
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

    def select_images(self, images: Sequence[str | int] | None) -> list[ImageEntry]:
        """The entries named by id or image name, in project order; all of them for None or [].

        A key matching an entry id selects that entry, else every entry with that image name.
        Unknown keys raise :class:`ProjectError` listing them and the images available.
        """
        if not images:
            return list(self.images)
        chosen: set[int] = set()
        missing: list[str] = []
        for key in images:
            text = str(key).strip()
            by_id = [i for i, e in enumerate(self.images) if str(e.entry_id) == text]
            hits = by_id or [i for i, e in enumerate(self.images) if e.name == text]
            if not hits:
                missing.append(repr(key))
            chosen.update(hits)
        if missing:
            available = ", ".join(f"{e.entry_id} {e.name!r}" for e in self.images[:30])
            available += ", …" if len(self.images) > 30 else ""
            raise ProjectError(f"{self.path}: no image with id or name {', '.join(missing)}; "
                               f"available: {available or 'none (the project has no images)'}")
        return [e for i, e in enumerate(self.images) if i in chosen]

    def annotations(
        self, entry: ImageEntry | int | str, *, source: str = "auto",
        object_types: Collection[str] | None = ("annotation",),
        closed_lines_as_areas: bool = False,
    ) -> AnnotationSet:
        """The objects drawn on one image (annotations by default).

        ``auto`` reads ``data/<id>/data.qpdata``, else the GeoJSON export in the histobridge
        layout, else returns an empty set with a note (and a ``problem`` when QuPath's
        ``summary.json`` counted objects). A file that exists but cannot be read raises.
        ``qpdata``/``geojson``/``paquo`` force one source and raise when it is unavailable.
        ``closed_lines_as_areas`` reads closed outlines (LineStrings) as areas.
        """
        from histobridge.qupath.sources import read_entry_annotations

        if source not in SOURCES:
            raise ProjectError(f"annotation source must be one of {', '.join(SOURCES)}, not {source!r}")
        e = entry if isinstance(entry, ImageEntry) else self.image(entry)
        return read_entry_annotations(self, e, source=source, object_types=object_types,
                                      closed_lines_as_areas=closed_lines_as_areas)

    def stored_summary(self, entry: ImageEntry | int | str) -> StoredSummary | None:
        """QuPath's own object counts for one image (``data/<id>/summary.json``), None without one.

        Available even when ``data.qpdata`` is missing, e.g. to show what QuPath had stored.
        """
        e = entry if isinstance(entry, ImageEntry) else self.image(entry)
        return read_summary(layout.summary_path(self.folder, e.entry_id))

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


def _check_unique_ids(items: list[Any], qpproj: Path) -> None:
    """Two entries with one id would share ``data/<id>/``: QuPath's own state is broken then."""
    ids = Counter(item.get("entryID") for item in items if isinstance(item, Mapping))
    dupes = sorted((i for i, n in ids.items() if n > 1), key=str)
    if dupes:
        raise ProjectError(f"{qpproj}: duplicate entryID(s) {', '.join(map(str, dupes))}; each image needs "
                           "its own id (they would share one data/<id> folder). Fix the project in QuPath")


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
    raw_name = item.get("imageName")
    name = raw_name if isinstance(raw_name, str) else f"Image {entry_id}"
    info = resolve_server(item.get("serverBuilder"), f"image {entry_id}")

    def stored_size() -> tuple[int, int] | None:  # only asked for when the file has moved
        if info.stored_size is not None or info.crop_region is not None:
            return info.stored_size  # summary.json has the size QuPath shows, after any crop
        summary = read_summary(layout.summary_path(locator.folder, entry_id))
        return (summary.width, summary.height) if summary and summary.width and summary.height else None

    path, relocated, missing = locator.locate(info.uri, stored_size)
    found = path is not None
    problem = missing if not found else info.problem
    raw_tags = item.get("tags")
    tags: list[Any] = raw_tags if isinstance(raw_tags, list) else []
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

    def locate(
        self, uri: str | None, stored_size: Callable[[], tuple[int, int] | None] = lambda: None
    ) -> tuple[Path | None, str | None, str | None]:
        """(path, original path if relocated, problem if not found).

        A file found anywhere but at the stored path must have the (width, height) that
        ``stored_size()`` gives, when it gives one.
        """
        if not uri:
            return None, None, "no image URI in the project"
        stored = uri_to_path(uri)
        if stored is None:
            return None, None, f"image URI {uri!r} is not a local file (only file: URIs can be read)"
        if not isinstance(stored, PureWindowsPath) and Path(stored).is_file():
            return Path(stored), None, None
        tried = [str(stored)]
        refused: list[str] = []
        size = stored_size()
        moved = self._relative_to_moved_project(stored)
        if moved is not None and str(moved) != str(stored):
            if moved.is_file():
                why = different_image(moved, size)
                if why is None:
                    return moved, str(stored), None
                refused.append(why)
            tried.append(str(moved))
        for hit in self._search(stored.name):  # below the project, then beside it
            why = different_image(hit, size)
            if why is None:
                return hit, str(stored), None
            refused.append(why)
        where = f"; also searched for {stored.name!r} in and beside {self.folder}" if self.search else ""
        if refused:  # the "different image" clause first: it is what a one-line summary shows
            found = "; ".join(refused)
            return None, None, f"a different image: {found}; image file not found: {' or '.join(tried)}"
        return None, None, f"image file not found: {' or '.join(tried)}{where}"

    def _relative_to_moved_project(self, stored: PurePath) -> Path | None:
        """Apply the project's own move to the image path (QuPath's UriUpdater rule)."""
        old = self.old_folder
        if old is None or type(old) is not type(stored):
            return None
        windows = isinstance(old, PureWindowsPath)
        a, b = [_fold(p, windows) for p in old.parts], [_fold(p, windows) for p in stored.parts]
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        if k == 0:
            return None
        rel = [".."] * (len(a) - k) + list(stored.parts[k:])
        return Path(os.path.normpath(self.folder.joinpath(*rel)))

    def _search(self, name: str) -> list[Path]:
        if not self.search or not name:
            return []
        if self._index is None:
            self._index = _index_files(self.folder, SEARCH_DEPTH, SEARCH_MAX_DIRS)
            for key, paths in _index_files(self.folder.parent, 2, SEARCH_MAX_DIRS // 5).items():
                self._index.setdefault(key, []).extend(p for p in paths if p not in self._index.get(key, []))
        hits = self._index.get(name) or self._index.get(name.lower()) or []
        if len(hits) > 1:
            log.warning("%d files named %s below %s; using the first of the stored size", len(hits), name,
                        self.folder)
        return list(hits)


def different_image(path: Path, size: tuple[int, int] | None) -> str | None:
    """Why ``path`` is not the image QuPath stored as ``size`` (width, height); None when it is.

    The file's level-0 size, or its OpenSlide bounds (what QuPath shows by default), must match.
    A file the slide readers cannot open is not judged here: opening it later reports why.
    """
    if size is None:
        return None
    from histobridge.errors import HistobridgeError
    from histobridge.slides import open_slide

    try:
        with open_slide(path) as slide:
            dims = tuple(int(v) for v in slide.dimensions)
            bounds = slide.reader_bounds
    except (HistobridgeError, OSError, ValueError) as err:
        log.debug("%s: size not checked (%s)", path, err)
        return None
    if dims == tuple(size) or (bounds is not None and tuple(bounds[2:]) == tuple(size)):
        return None
    return f"{path} is {dims[0]}×{dims[1]} px where QuPath stored {size[0]}×{size[1]} px"


def _fold(part: str, windows: bool) -> str:
    """Path parts compare case-insensitively on Windows, as the file system does there."""
    return part.lower() if windows else part


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


__all__ = ["SOURCES", "ImageEntry", "Project", "StoredSummary", "different_image", "find_project_file"]
