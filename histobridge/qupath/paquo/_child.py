"""Child-process entry for :mod:`histobridge.qupath.paquo.read` (not a library module).

Usage: ``python -m histobridge.qupath.paquo._child check`` or ``... read PROJECT ENTRY_ID``.
stdout carries the answer (a version line, or a GeoJSON FeatureCollection); errors go to stderr
with a non-zero exit status. Importing paquo here starts the JVM, which is why this is its own process.
"""

from __future__ import annotations

import json
import sys


def _check() -> int:
    import paquo

    try:
        import paquo.projects  # starts the JVM; fails when QuPath is not found
        from paquo.java import GeneralTools
    except Exception as err:  # paquo raises plain ValueError/FileNotFoundError/OSError: one line suffices
        sys.stderr.write(f"{type(err).__name__}: {err}\n")
        return 1
    version = str(GeneralTools.getVersion())
    sys.stdout.write(f"paquo {getattr(paquo, '__version__', '?')} with QuPath {version}\n")
    return 0


def _read(project: str, entry_id: int) -> int:
    from paquo.projects import QuPathProject

    with QuPathProject(project, mode="r") as qp:
        for image in qp.images:
            if int(image.entry_id) == entry_id:
                features = image.hierarchy.to_geojson()
                json.dump({"type": "FeatureCollection", "features": features}, sys.stdout)
                return 0
    sys.stderr.write(f"{project}: no image with entryID {entry_id}\n")
    return 2


def _main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        return _check()
    if len(argv) == 3 and argv[0] == "read":
        return _read(argv[1], int(argv[2]))
    sys.stderr.write("usage: _paquo_child check | read PROJECT ENTRY_ID\n")
    return 64


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
