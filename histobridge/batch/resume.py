"""Resume marks: an image-step finished under a key (settings + input files) is not run again.

Marks are written by the client alone, atomically, after a task reports ``done``; a worker that dies
leaves no mark, so its image-step runs again (and the library's own atomic writes mean the rerun
replaces, never duplicates, what it had half written).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from histobridge._atomic import write_json
from histobridge.batch.layout import ProjectPaths
from histobridge.batch.records import StepResult
from histobridge.qupath import layout
from histobridge.qupath.project import ImageEntry, Project
from histobridge.runs import ImageOutcome


def _stat(path: Path | None) -> list[Any] | None:
    if path is None or not path.is_file():
        return None
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def entry_inputs(project: Project, entry: ImageEntry) -> list[Any]:
    """What an image-step reads besides settings: the slide file and the stored annotations."""
    folder = project.folder
    eid = entry.entry_id
    stored = [layout.qpdata_path(folder, eid), *layout.annotation_candidates(folder, eid)]
    return [entry.uri, _stat(entry.path), [_stat(p) for p in stored]]


def step_key(record: dict[str, Any], inputs: Iterable[Any]) -> str:
    text = json.dumps({"settings": record, "inputs": list(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def finished(paths: ProjectPaths, step: str, entry_id: str, key: str, output: Path) -> StepResult | None:
    """The earlier result of this image-step when it is done under the same key and its output exists."""
    mark = paths.mark(step, entry_id)
    try:
        data = json.loads(mark.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key or data.get("status") != "done" or not output.exists():
        return None
    outcome = ImageOutcome(entry_id, str(data.get("name", "")), "done", count=int(data.get("count", 0)))
    return StepResult(paths.root.name, step, outcome, 0.0, resumed=True, key=key)


def record(paths: ProjectPaths, result: StepResult, key: str) -> None:
    """Mark a done image-step (others get no mark: they run again next time)."""
    o = result.outcome
    if o.ok:
        mark = paths.mark(result.step, str(o.entry_id))
        write_json(mark, {"key": key, "status": o.status, "name": o.name, "count": o.count})
