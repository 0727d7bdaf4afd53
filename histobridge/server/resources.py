"""What requests share: projects read once, the model catalogue, and warm model and slide caches.

Models are loaded once and kept in a bounded LRU (on the GPU when there is one); a model being
loaded by one request is waited for, not loaded twice. Slides are opened once per image and shared
by concurrent requests (the readers are thread-safe); an evicted slide is closed only when no
request still holds it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from histobridge.server.paths import PathGuard
from histobridge.server.problems import NotFoundError
from histobridge.server.settings import ServerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
SEARCH_DEPTH = 3


@dataclass(frozen=True)
class ModelInfo:
    """One model found in a model folder: ``kind`` is ``classifier`` or ``generator``."""

    model_id: str
    kind: str
    path: Path
    classes: tuple[str, ...]
    tile_px: int
    tile_um: float | None
    problem: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "kind": self.kind,
            "classes": list(self.classes),
            "tile_px": self.tile_px,
            "tile_um": self.tile_um,
            "problem": self.problem,
        }


def _classifier_info(folder: Path, model_id: str) -> ModelInfo:
    from histobridge.errors import HistobridgeError
    from histobridge.models.classifier import ClassifierConfig

    try:
        cfg = ClassifierConfig.from_file(folder / "config.json")
    except HistobridgeError as err:
        return ModelInfo(model_id, "classifier", folder, (), 0, None, str(err))
    return ModelInfo(
        model_id, "classifier", folder, tuple(cfg.class_names), int(cfg.patch_size_pixels), float(cfg.tile_um)
    )


def _generator_info(path: Path, model_id: str) -> ModelInfo:
    import json

    meta: dict[str, Any] = {}
    sidecar = path.with_suffix(".json") if path.suffix == ".safetensors" else None
    if sidecar is not None and not sidecar.is_file():
        sidecar = path.parent / "generator.json"
    if sidecar is not None and sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return ModelInfo(model_id, "generator", path, (), 0, None, f"{sidecar}: {err}")
    m: dict[str, Any] = meta["meta"] if isinstance(meta.get("meta"), dict) else meta
    classes = tuple(str(c) for c in (m.get("class_names") or ()))
    px = m.get("tile_px") or (meta.get("config") or {}).get("img_resolution") or 0
    um = m.get("tile_um")
    return ModelInfo(model_id, "generator", path, classes, int(px), float(um) if um else None)


def discover_models(folders: list[Path]) -> dict[str, ModelInfo]:
    """Classifier folders (``config.json`` + ``torchscript_model.pt``) and generators
    (``generator.json`` + ``.safetensors``, or a ``.pkl``) under ``folders``, by unique id."""
    found: dict[str, ModelInfo] = {}

    def add(make: Callable[[Path, str], ModelInfo], path: Path, name: str) -> None:
        key, n = name, 2
        while key in found:
            if found[key].path == path:
                return
            key, n = f"{name}-{n}", n + 1
        found[key] = make(path, key)

    def walk(folder: Path, depth: int) -> None:
        if not folder.is_dir() or depth > SEARCH_DEPTH:
            return
        if (folder / "config.json").is_file() and (folder / "torchscript_model.pt").is_file():
            add(_classifier_info, folder.resolve(), folder.name)
        for f in sorted(folder.iterdir()):
            if (
                f.is_file()
                and f.suffix == ".safetensors"
                and (f.with_suffix(".json").is_file() or (folder / "generator.json").is_file())
            ):
                add(_generator_info, f.resolve(), folder.name if f.stem == "generator" else f.stem)
            elif f.is_file() and f.suffix == ".pkl":
                add(_generator_info, f.resolve(), f.stem)
            elif f.is_dir() and not f.name.startswith("."):
                walk(f, depth + 1)

    for folder in folders:
        walk(folder, 0)
    return found


@dataclass(frozen=True)
class SlideFile:
    """A slide named by path (no project): opened with its own calibration, no offset."""

    entry_id: str
    name: str
    path: Path

    def open_slide(self) -> Any:
        from histobridge.slides import open_slide

        return open_slide(self.path)


class LRUCache(Generic[T]):
    """A bounded, thread-safe cache that builds each value once (other askers wait for it)."""

    def __init__(self, size: int, on_evict: Callable[[T], None] | None = None) -> None:
        self.size = max(1, size)
        self.items: OrderedDict[Any, T] = OrderedDict()
        self.lock = threading.Lock()
        self.building: dict[Any, threading.Lock] = {}
        self.on_evict = on_evict
        self.loads = 0

    def get(self, key: Any, build: Callable[[], T]) -> T:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            gate = self.building.setdefault(key, threading.Lock())
        with gate:
            with self.lock:
                if key in self.items:
                    self.items.move_to_end(key)
                    return self.items[key]
            value = build()
            evicted = []
            with self.lock:
                self.loads += 1
                self.items[key] = value
                while len(self.items) > self.size:
                    evicted.append(self.items.popitem(last=False)[1])
                self.building.pop(key, None)
        for v in evicted:
            if self.on_evict is not None:
                self.on_evict(v)
        return value

    def cached(self) -> list[Any]:
        with self.lock:
            return list(self.items)


class _SharedSlide:
    def __init__(self, slide: Any) -> None:
        self.slide = slide
        self.users = 0
        self.evicted = False
        self.lock = threading.Lock()

    def close_if_unused(self) -> None:
        with self.lock:
            if self.evicted and self.users == 0:
                self.slide.close()


class Resources:
    """Projects (read at start), the model catalogue and the warm caches of one server."""

    def __init__(self, settings: ServerSettings) -> None:
        from histobridge.qupath.project import Project

        self.settings = settings
        self.projects: dict[str, Any] = {}
        for p in settings.projects:
            proj = Project.open(p)
            key, n = proj.folder.name, 2
            while key in self.projects:
                key, n = f"{proj.folder.name}-{n}", n + 1
            self.projects[key] = proj
        folders = [Path(d) for d in settings.model_dirs]
        if settings.sample_models:
            folders += self._sample_model_folders()
        self.models = discover_models(folders)
        roots = [p.folder for p in self.projects.values()] + folders + list(settings.slide_roots)
        self.guard = PathGuard(roots)
        self.model_cache: LRUCache[Any] = LRUCache(settings.model_cache)
        self.slide_cache: LRUCache[_SharedSlide] = LRUCache(settings.slide_cache, self._evict_slide)
        self.thumbnails: LRUCache[Any] = LRUCache(4 * settings.slide_cache)
        self.image_locks: dict[tuple[str, int | str], threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._counts: dict[tuple[str, int], dict[str, int]] = {}

    @staticmethod
    def _sample_model_folders() -> list[Path]:
        from histobridge.demo.run import sample_model_paths

        try:
            clf, gen = sample_model_paths()
        except (OSError, LookupError):  # a source tree without sample models
            return []
        return [p for p in (clf, gen.parent) if p.exists()]

    # -- lookups ------------------------------------------------------------------------------------
    def project(self, key: str) -> Any:
        if key not in self.projects:
            raise NotFoundError(f"no project {key!r}; served projects: {', '.join(self.projects) or 'none'}")
        return self.projects[key]

    def image(self, project_key: str, image: int | str) -> tuple[Any, Any]:
        proj = self.project(project_key)
        for e in proj.images:
            if str(e.entry_id) == str(image) or e.name == image:
                return proj, e
        raise NotFoundError(
            f"{proj.path}: no image {image!r} (ids: {', '.join(str(e.entry_id) for e in proj.images[:30])})"
        )

    def target(self, project_key: str | None, image: str | None, slide: str | None) -> tuple[Any, Any, str]:
        """(project or None, entry, cache key) for a project image or a slide path under a served folder."""
        from histobridge.errors import InputError

        if slide:
            if project_key or image:
                raise InputError("name either project + image or slide, not both")
            path = self.guard.resolve(slide, what="slide")
            return None, SlideFile(str(path), path.name, path), "@slide"
        if not project_key or image is None:
            raise InputError("name the image: project + image (id or name), or slide (a path)")
        proj, entry = self.image(project_key, image)
        return proj, entry, project_key

    def model(self, model_id: str, kind: str) -> ModelInfo:
        info = self.models.get(model_id)
        if info is None or info.kind != kind:
            known = ", ".join(k for k, v in self.models.items() if v.kind == kind) or "none"
            raise NotFoundError(f"no {kind} {model_id!r}; available: {known}")
        return info

    def image_lock(self, project_key: str, entry_id: int | str) -> threading.Lock:
        with self._locks_lock:
            return self.image_locks.setdefault((project_key, entry_id), threading.Lock())

    def annotation_counts(self, project_key: str, entry: Any) -> dict[str, int]:
        """Annotations per class (read once per image; ``null`` class as ``"Unclassified"``)."""
        key = (project_key, entry.entry_id)
        if key not in self._counts:
            proj = self.project(project_key)
            counts: dict[str, int] = {}
            for a in proj.annotations(entry).annotations:
                name = a.path_class or "Unclassified"
                counts[name] = counts.get(name, 0) + 1
            self._counts[key] = counts
        return self._counts[key]

    # -- warm caches --------------------------------------------------------------------------------
    def classifier(self, model_id: str) -> Any:
        from histobridge.models.classifier import load_classifier

        info = self.model(model_id, "classifier")
        return self.model_cache.get(
            ("classifier", model_id), lambda: load_classifier(info.path, device=self.settings.device)
        )

    def generator(self, model_id: str) -> Any:
        from histobridge.models.checkpoints import load_generator
        from histobridge.models.classifier import select_device

        info = self.model(model_id, "generator")
        device = str(select_device(self.settings.device))
        return self.model_cache.get(("generator", model_id), lambda: load_generator(info.path, device=device))

    @contextlib.contextmanager
    def slide(self, project_key: str, entry: Any) -> Iterator[Any]:
        """The image's shared slide, held open for the ``with`` block."""
        shared = self.slide_cache.get((project_key, entry.entry_id), lambda: _SharedSlide(entry.open_slide()))
        with shared.lock:
            shared.users += 1
        try:
            yield shared.slide
        finally:
            with shared.lock:
                shared.users -= 1
            shared.close_if_unused()

    def thumbnail(self, key: str, entry: Any, max_px: int) -> tuple[Any, float]:
        """The image's (thumbnail, downsample) at ``max_px``, read once."""

        def read() -> tuple[Any, float]:
            with self.slide(key, entry) as slide:
                pixels, downsample = slide.thumbnail(max_px)
            return pixels, float(downsample)

        found: tuple[Any, float] = self.thumbnails.get((key, entry.entry_id, max_px), read)
        return found

    def tissue(self, key: str, entry: Any, max_px: int) -> Any:
        """The image's tissue outline (level 0) from that thumbnail, computed once."""
        from histobridge.slides.tissue import thumbnail_tissue

        cache_key = ("tissue", key, entry.entry_id, max_px)
        return self.thumbnails.get(cache_key, lambda: thumbnail_tissue(self.thumbnail(key, entry, max_px)))

    @staticmethod
    def _evict_slide(shared: _SharedSlide) -> None:
        with shared.lock:
            shared.evicted = True
        shared.close_if_unused()

    def close(self) -> None:
        for shared in list(self.slide_cache.items.values()):
            self._evict_slide(shared)


__all__ = ["LRUCache", "ModelInfo", "Resources", "discover_models"]
