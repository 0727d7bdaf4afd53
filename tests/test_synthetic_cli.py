"""``gan blend``, ``gan layer-blend``, ``gan seeds`` and ``synth`` through the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr
from _synthetic_helpers import tiny_classifier, tiny_generator, tiny_store
from typer.testing import CliRunner

from histobridge.cli import app
from histobridge.cli.synth import parse_class_map
from histobridge.errors import InputError
from histobridge.models.gan_format import save_generator
from histobridge.ranges import parse_floats
from histobridge.synthetic import synthesis as syn
from histobridge.synthetic.blending import parse_layers, parse_splits

runner = CliRunner()


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory):
    G = tiny_generator(c_dim=2, res=16, tile_um=64.0, names=("Red", "Blue"))
    return save_generator(G, tmp_path_factory.mktemp("gan") / "tiny.safetensors")


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def test_blend_writes_strip_and_table(gen_path, tmp_path) -> None:
    clf = tiny_classifier(tmp_path, ["Red", "Blue"], px=12, um_px=4.0)
    out = tmp_path / "b"
    text = _ok(["gan", "blend", str(gen_path), "--seed", "3", "--from", "red", "--to", "1", "--steps", "5",
                "--classifier", str(clf.source), "--out", str(out)])  # fmt: skip
    assert text.count("t=") == 5
    rows = json.loads((out / "blend_seed3_Red_to_Blue.json").read_text())["rows"]
    assert [r["t"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert {"pred_Red", "pred_Blue"} <= set(rows[0])
    assert (out / "blend_seed3_Red_to_Blue.png").exists()


def test_blend_several_seeds_and_explicit_positions(gen_path, tmp_path) -> None:
    out = tmp_path / "b"
    text = _ok(["gan", "blend", str(gen_path), "--seeds", "1-2", "--from", "blue", "--to", "r", "--steps",
                "0,0.3,1", "--out", str(out)])  # fmt: skip
    assert text.count("t=") == 6
    for seed in (1, 2):
        rows = json.loads((out / f"blend_seed{seed}_Blue_to_Red.json").read_text())["rows"]
        assert [r["t"] for r in rows] == [0.0, 0.3, 1.0]


def test_layer_blend_layers_and_splits(gen_path, tmp_path) -> None:
    _ok(["gan", "layer-blend", str(gen_path), "--seed", "1,2", "--from", "Red", "--to", "Blue",
         "--layers", "0-2", "--alpha", "0.5,1", "--out", str(tmp_path / "l")])  # fmt: skip
    images = json.loads((tmp_path / "l" / "layer_blend_Red_Blue.json").read_text())["images"]
    assert len(images) == 4 and all(r["layers_a"] == [0, 1, 2] for r in images)
    assert sorted({r["alpha"] for r in images}) == [0.5, 1.0]
    _ok(["gan", "layer-blend", str(gen_path), "--seeds", "1", "--from", "0", "--to", "1", "--splits",
         "0-6:3", "--out", str(tmp_path / "s")])  # fmt: skip
    images = json.loads((tmp_path / "s" / "layer_blend_Red_Blue.json").read_text())["images"]
    assert [r["split"] for r in images] == [0, 3, 6]


def test_layer_blend_rejects_bad_layers_and_splits(gen_path, tmp_path) -> None:
    for option, value, message in (
        ("--layers", "0-40", "outside 0..5"),
        ("--layers", "3-1", "--layers '3-1': range '3-1' runs backwards; write 1-3"),
        ("--splits", "0-40", "split points"),
        ("--splits", "0,x", "--splits '0,x'"),
    ):
        res = runner.invoke(app, ["gan", "layer-blend", str(gen_path), "--seed", "1", "--from", "0", "--to",
                                  "1", option, value, "--out", str(tmp_path / "o")])  # fmt: skip
        assert res.exit_code != 0 and isinstance(res.exception, InputError), (option, value)
        assert message in str(res.exception), str(res.exception)
    assert not (tmp_path / "o").exists()


def test_seeds_command(gen_path, tmp_path) -> None:
    clf = tiny_classifier(tmp_path, ["Red", "Blue"], px=8, um_px=6.0, gain=4.0)
    out = str(tmp_path / "s")
    text = _ok(["gan", "seeds", str(gen_path), "--classifier", str(clf.source), "--seeds", "0-9",
                "--from", "Red", "--to", "Blue", "--thresholds", "0.2,0.5,0.8", "--out", out])  # fmt: skip
    assert "strong:" in text and "best:" in text
    doc = json.loads((tmp_path / "s" / "seeds.json").read_text())
    assert len(doc["rows"]) == 10 and doc["thresholds"] == [0.2, 0.5, 0.8]
    assert (tmp_path / "s" / "seeds.csv").read_text().startswith("seed,class_start,class_end,pred_start")


def test_synth_with_store(gen_path, tmp_path) -> None:
    store = tiny_store(tmp_path / "t.zarr", [("red", 2), ("blue", 1)], tile_px=8, tile_um=32.0,
                       classes=("red", "blue"))  # fmt: skip
    _ok(["synth", str(tmp_path), "--generator", str(gen_path), "--store", str(store), "--n", "3",
         "--class-map", "blue=Red", "--out", str(tmp_path / "o")])  # fmt: skip
    sub = zarr.open_group(str(store), mode="r")["0"]["synthetic"]
    np.testing.assert_array_equal(sub["classes"][:], [0, 0, 0, 0, 0, 0])  # blue mapped onto Red
    assert sub["tiles"].shape == (6, 8, 8, 3)
    doc = json.loads((tmp_path / "o" / "synth.json").read_text())
    assert doc["groups"][0]["per_region"] == {"0": 3, "1": 3}
    assert len(doc["groups"][0]["montages"]) == 2


def test_synth_tiles_the_project_at_the_gan_geometry(gen_path, tmp_path) -> None:
    from _heatmap_helpers import BLUE_POLY, RED_POLY, annotation, make_project, write_slide

    slide = write_slide(tmp_path / "colours.tif")
    project = make_project(
        tmp_path / "proj", slide, [annotation(RED_POLY, "Red"), annotation(BLUE_POLY, "Blue")]
    )
    out = tmp_path / "o"
    _ok(["synth", str(project), "--generator", str(gen_path), "--out", str(out)])
    root = zarr.open_group(str(out / "tiles.zarr"), mode="r")
    grp = root["1"]
    assert grp.attrs["tile_px"] == 16 and grp.attrs["tile_um"] == pytest.approx(64.0)
    sub = grp["synthetic"]
    real_regions = np.asarray(grp["regions"][:])
    syn_regions = np.asarray(sub["regions"][:])
    for r in np.unique(real_regions):
        assert (syn_regions == r).sum() == (real_regions == r).sum()
    names = [grp.attrs["regions"][r]["class"] for r in syn_regions]
    assert set(names) == {"Red", "Blue"} and len(names) == len(real_regions) > 4
    assert [["Red", "Blue"][c] for c in sub["classes"][:]] == names
    G = tiny_generator(c_dim=2, res=16, tile_um=64.0, names=("Red", "Blue"))
    first = syn.generate(G, [int(sub["seeds"][0])], int(sub["swap_classes"][0])).raw[0]
    np.testing.assert_array_equal(sub["swapped"][0], first)


def test_synth_refuses_a_class_map_for_no_region(gen_path, tmp_path) -> None:
    store = tiny_store(tmp_path / "t.zarr", [("red", 1)], tile_px=8, tile_um=32.0, classes=("red",))
    res = runner.invoke(app, ["synth", str(tmp_path), "--generator", str(gen_path), "--store", str(store),
                              "--class-map", "rde=Red", "--out", str(tmp_path / "o")])  # fmt: skip
    assert isinstance(res.exception, InputError) and "['rde'], which no region has" in str(res.exception)
    assert "synthetic" not in zarr.open_group(str(store), mode="r")["0"]


def test_parsers() -> None:
    assert parse_class_map("tumor=1, stroma = Blue") == {"tumor": "1", "stroma": "Blue"}
    with pytest.raises(InputError):
        parse_class_map("tumor")
    with pytest.raises(InputError, match="twice"):
        parse_class_map("tumor=1,tumor=0")
    assert parse_floats("0.5,1", what="--alpha") == (0.5, 1.0)
    with pytest.raises(InputError, match="--alpha"):
        parse_floats("x", what="--alpha")
    assert parse_splits("auto", 4) is None
    assert parse_splits("0,2-3", 4) == (0, 2, 3)
    assert parse_layers("4,0-2") == (0, 1, 2, 4)


MODULES = (
    "histobridge.ranges",
    "histobridge.synthetic.conditioning",
    "histobridge.synthetic.fov",
    "histobridge.synthetic.matched",
    "histobridge.synthetic.synthesis",
    "histobridge.synthetic.blending",
    "histobridge.synthetic.seeds",
    "histobridge.cli.gan",
    "histobridge.cli.synth",
)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str) -> None:
    """Each module imports first in a fresh interpreter (an import cycle would break one of them)."""
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_synthetic_import_graph_has_no_cycle() -> None:
    """Static check: the synthetic modules' imports of each other (top-level or inside functions)
    form a DAG, with conditioning at the bottom."""
    import ast
    from pathlib import Path

    import histobridge.synthetic as pkg

    folder = Path(pkg.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "histobridge.synthetic":
                    deps |= {a.name for a in node.names}
                elif node.module.startswith("histobridge.synthetic."):
                    deps.add(node.module.rsplit(".", 1)[1])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("histobridge.synthetic.")]
                deps |= {n.rsplit(".", 1)[1] for n in names}
        graph[path.stem] = deps - {path.stem}
    assert graph["conditioning"] == set() and "synthesis" not in graph["matched"]
    done: set[str] = set()

    def visit(node: str, stack: tuple[str, ...]) -> None:
        assert node not in stack, f"import cycle: {' -> '.join((*stack, node))}"
        if node not in done:
            for dep in graph.get(node, ()):
                visit(dep, (*stack, node))
            done.add(node)

    for name in graph:
        visit(name, ())


def test_seeds_command_writes_the_interpolation_curve(gen_path, tmp_path) -> None:
    clf = tiny_classifier(tmp_path, ["Red", "Blue"], px=8, um_px=6.0, gain=4.0)
    out = tmp_path / "s"
    text = _ok(["gan", "seeds", str(gen_path), "--classifier", str(clf.source), "--seeds", "0-9",
                "--from", "Red", "--to", "Blue", "--thresholds", "0.45,0.5,0.55", "--top", "3",
                "--curve-steps", "5", "--out", str(out)])  # fmt: skip
    assert "interpolation_Red_to_Blue.png" in text
    rows = (out / "interpolation_Red_to_Blue.csv").read_text().splitlines()
    assert rows[0] == "group,seeds,step,t,mean,sd" and len(rows) == 1 + 2 * 5


def test_blend_command_writes_a_gif(gen_path, tmp_path) -> None:
    from PIL import Image

    clf = tiny_classifier(tmp_path, ["Red", "Blue"], px=8, um_px=6.0, gain=4.0)
    text = _ok(["gan", "blend", str(gen_path), "--seed", "2", "--from", "Red", "--to", "Blue", "--steps", "3",
                "--classifier", str(clf.source), "--gif", "--out", str(tmp_path / "b")])  # fmt: skip
    assert "frames)" in text
    with Image.open(tmp_path / "b" / "blend_seed2.gif") as im:
        assert im.n_frames >= 2 * 25 - 2
    res = CliRunner().invoke(app, ["gan", "blend", str(gen_path), "--seed", "2", "--from", "Red", "--to",
                                   "Blue", "--gif", "--out", str(tmp_path / "c")])  # fmt: skip
    assert isinstance(res.exception, InputError) and "--gif needs --classifier" in str(res.exception)


def test_synth_invert_writes_counterfactuals(gen_path, tmp_path) -> None:
    store = tiny_store(tmp_path / "t.zarr", [("Red", 2), ("Blue", 2)], tile_px=8, tile_um=32.0,
                       classes=("Red", "Blue"))  # fmt: skip
    clf = tiny_classifier(tmp_path, ["Red", "Blue"], px=8, um_px=3.0, gain=4.0)
    text = _ok(["synth", str(tmp_path), "--generator", str(gen_path), "--store", str(store), "--n", "1",
                "--classifier", str(clf.source), "--invert", "1", "--invert-steps", "5",
                "--out", str(tmp_path / "o")])  # fmt: skip
    assert "PSNR" in text and "counterfactuals.png" in text
    doc = json.loads((tmp_path / "o" / "counterfactuals" / "counterfactuals.json").read_text())
    assert [t["class_from"] for t in doc["tiles"]] == ["Red", "Blue"]
    assert [t["class_to"] for t in doc["tiles"]] == ["Blue", "Red"]
    assert doc["settings"]["steps"] == 5 and "random" in doc["feature_net"]
    res = CliRunner().invoke(app, ["synth", str(tmp_path), "--generator", str(gen_path), "--store",
                                   str(store), "--invert", "1", "--out", str(tmp_path / "p")])  # fmt: skip
    assert isinstance(res.exception, InputError) and "--invert needs --classifier" in str(res.exception)
