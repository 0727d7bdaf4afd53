"""Rebuild the bundled sample projects' QuPath data files (data/<id>/data.qpdata, summary.json)
from their GeoJSON exports. Run after editing a sample's annotations; the output is reproducible.

    python scripts/build_sample_data.py [--offline]
"""

from __future__ import annotations

import sys
from pathlib import Path

from histobridge.qupath.sample import build_sample_data

SAMPLES = Path(__file__).resolve().parents[1] / "sample_projects"


def main() -> None:
    offline = "--offline" in sys.argv[1:]
    for folder in sorted(p for p in SAMPLES.iterdir() if (p / "project.qpproj").is_file()):
        for path in build_sample_data(folder, offline=offline):
            print(f"wrote {path.relative_to(SAMPLES.parent)}")


if __name__ == "__main__":
    main()
