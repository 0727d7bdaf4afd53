"""Where a batch writes: one folder per project under ``--out``, the same files the single commands write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from histobridge._names import safe_name


@dataclass(frozen=True)
class ProjectPaths:
    """The output folders of one project: tile store, heatmap outputs, montages, teaching, resume marks."""

    project: Path
    root: Path

    @property
    def store(self) -> Path:
        return self.root / "tiles.zarr"

    @property
    def heatmap(self) -> Path:
        return self.root / "heatmap"

    @property
    def montages(self) -> Path:
        return self.root / "synth" / "montages"

    @property
    def teach(self) -> Path:
        return self.root / "teach"

    @property
    def marks(self) -> Path:
        return self.root / ".batch"

    def mark(self, step: str, entry_id: str) -> Path:
        return self.marks / f"{step}-{safe_name(entry_id)}.json"


def project_paths(projects: Sequence[Path], out: Path) -> list[ProjectPaths]:
    """One folder per project, named after the project folder (``-2``, ``-3`` … when names repeat)."""
    seen: dict[str, int] = {}
    paths = []
    for p in projects:
        folder = p.parent if p.suffix == ".qpproj" else p
        name = safe_name(folder.name, "project")
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}-{seen[name]}"
        paths.append(ProjectPaths(Path(p), Path(out) / label))
    return paths
