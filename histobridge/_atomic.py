"""Atomic file output: write to a temporary sibling, fsync, then rename over the target.

A reader (or a rerun after a crash) therefore sees either the old file or the complete new one,
never a half-written one.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success.

    Works for files and directories (e.g. a Zarr group written elsewhere then moved in).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    out = tmp / target.name
    try:
        yield out
        if target.is_dir() and not target.is_symlink():
            replace_dir(out, target)  # old one aside, new one in, then old one deleted
        else:
            os.replace(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``target`` only if the block succeeds.

    A ``.gz`` target is gzip-compressed transparently.
    """
    with atomic_path(target) as tmp:
        fh: IO[Any]
        if str(target).endswith(".gz"):
            # GzipFile is binary but not typed IO[bytes]; either is closed below, before the rename.
            if "b" in mode:
                fh = cast(IO[bytes], gzip.open(tmp, "wb"))  # noqa: SIM115
            else:
                fh = gzip.open(tmp, "wt", encoding="utf-8")  # noqa: SIM115
        else:
            if "b" not in mode:
                kwargs.setdefault("encoding", "utf-8")
            fh = open(tmp, mode, **kwargs)  # noqa: SIM115 - closed below before the rename
        try:
            yield fh
            fh.flush()
            if hasattr(fh, "fileno"):
                with contextlib.suppress(OSError, ValueError):
                    os.fsync(fh.fileno())
        finally:
            fh.close()


def write_json(target: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Write JSON atomically (gzip when the name ends in ``.gz``)."""
    with atomic_open(target, "w") as fh:
        json.dump(obj, fh, indent=indent, allow_nan=False)
        fh.write("\n")


def write_csv(
    target: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Write a CSV table atomically: one header row, then ``rows`` (``\\n`` line ends, UTF-8)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_open(target, "w", newline="") as fh:
        fh.write(buf.getvalue())


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_open(target, "wb") as fh:
        fh.write(data)


def replace_dir(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put directory ``new`` in place of ``target``: old one renamed aside, new one moved in, old deleted.

    At every moment one complete version sits at ``target`` or beside it, so a crash (or a full
    disk) midway never loses both; if moving the new one in fails, the old one is put back.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, aside / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside / target.name, target)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def copy_file(src: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy a file atomically (temporary sibling, fsync, rename): never a half-copied target."""
    with atomic_open(target, "wb") as fh, open(src, "rb") as inp:
        shutil.copyfileobj(inp, fh, 1 << 20)


def backup_file(path: str | os.PathLike[str], suffix: str = ".backup") -> Path | None:
    """Copy ``path`` to ``path + suffix`` (as QuPath does before it saves); return the copy."""
    path = Path(path)
    if not path.exists():
        return None
    dst = path.with_name(path.name + suffix)
    shutil.copy2(path, dst)
    return dst
