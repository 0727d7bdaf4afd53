"""QuPath-checked tier: the live and synthetic scripts run on QuPath's real classes (0.5.1, 0.6.0) against
a histobridge server started here on loopback, on a project whose image data QuPath itself wrote."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from _qupath_tier import GROOVY, VERSIONS, imagej_project, require_install, run_quPath

from histobridge.qupath import layout
from tests._server_helpers import LiveServer

pytestmark = [pytest.mark.qupath, pytest.mark.slow]  # selected by `pytest -m qupath`
REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "qupath_scripts"

# Run before the synthetic script: select one area annotation and call it Epidermis (a generator class).
SELECT = """
import qupath.lib.objects.classes.PathClass
def chosen = getAnnotationObjects().find { it.getROI().isArea() && it.getROI().getBoundsWidth() > 150 }
chosen.setPathClass(PathClass.fromString('Epidermis'))
imageData.getHierarchy().getSelectionModel().setSelectedObject(chosen)
"""


def _project(folder: Path, version: str, shared_dir: Path) -> Path:
    """A one-image project: a calibrated pink TIFF (QuPath's ImageJ server opens it) with the objects
    QuPath ``version`` wrote (variety.qpdata)."""
    rng = np.random.default_rng(0)
    pixels = np.full((1500, 2000, 3), (200, 120, 170), np.int16) + rng.integers(-40, 40, (1500, 2000, 3))
    image = folder.parent / "pink.tif"
    tifffile.imwrite(
        image,
        pixels.clip(0, 255).astype(np.uint8),
        photometric="rgb",
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )  # 0.5 µm/px
    qpproj = imagej_project(folder, [("pink", image)], version)
    data = layout.qpdata_path(folder, 1)
    data.parent.mkdir(parents=True)
    shutil.copy(shared_dir / "fixtures" / "qupath" / f"written-{version}" / "variety.qpdata", data)
    return qpproj


def _script(tmp: Path, name: str, server: str, prelude: str = "") -> str:
    text = (SCRIPTS / name).read_text(encoding="utf-8")
    assert "def SERVER = 'http://127.0.0.1:8321'" in text
    text = text.replace("def SERVER = 'http://127.0.0.1:8321'", f"def SERVER = '{server}'")
    if prelude:  # after the imports, before the parameters
        text = text.replace("// ---- parameters", prelude + "\n// ---- parameters", 1)
    out = tmp / name
    out.write_text(text, encoding="utf-8")
    return str(out)


@pytest.mark.parametrize("version", VERSIONS)
def test_live_and_synthetic_scripts_against_a_running_server(version, tmp_path, shared_dir) -> None:
    install = require_install(version)
    if not GROOVY.is_file():
        pytest.skip(f"no Groovy jar ({GROOVY}; Debian package 'groovy')")
    qpproj = _project(tmp_path / "proj", version, shared_dir)
    with LiveServer(qpproj.parent) as server:
        live = _script(tmp_path, "histobridge_live.groovy", server.url)
        synth = _script(tmp_path, "histobridge_synthetic.groovy", server.url, SELECT)
        jobs: list[dict[str, Any]] = [
            {"op": "groovy", "project": str(qpproj), "entry": 1, "scripts": [live, live]},
            {"op": "groovy", "project": str(qpproj), "entry": 1, "scripts": [synth]},
        ]
        run = run_quPath(install, jobs, timeout=300)
    printed = run.value(0)["printed"]
    assert "histobridge: classifying" in printed and " tiles" in printed, printed
    lines = [ln for ln in printed.splitlines() if "earlier tile(s), added" in ln]
    assert len(lines) == 2, printed
    added = int(lines[0].split("added ")[1].split(" ")[0])
    assert added > 0 and lines[0].startswith("histobridge: 'pink': removed 0 earlier")
    assert f"removed {added} earlier tile(s), added {added}" in lines[1]  # replaced, not stacked
    tiles = [
        o for o in run.value(0)["objects"] if o["type"] == "PathTileObject" and o["name"] == "classifier"
    ]
    assert len(tiles) == added  # QuPath's own tiles in the image data are left alone
    assert all("classifier: Epidermis probability" in t["measurement_names"] for t in tiles)
    printed = run.value(1)["printed"]
    assert "montage (real | synthetic | swapped) saved to" in printed, printed
    montage = Path(printed.split("saved to ")[1].strip().splitlines()[0])
    assert montage.parent == qpproj.parent / "histobridge" / "live" and montage.stat().st_size > 1000
    assert "seed 0 Epidermis -> Dermis prediction" in printed
