"""classes.json: signed packed ARGB colours, and URI/path spellings QuPath and Python use."""

from __future__ import annotations

import json
import random
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from histobridge.errors import ProjectError
from histobridge.qupath.annotations import PathClass
from histobridge.qupath.classes import argb_to_rgb, read_classes, rgb_to_argb, write_classes
from histobridge.qupath.servers import path_to_uri, same_uri, uri_to_path


@pytest.mark.parametrize(
    ("packed", "rgb"),
    [(-3670016, (200, 0, 0)), (-65536, (255, 0, 0)), (-6895466, (150, 200, 150)),
     (-16777036, (0, 0, 180)), (-1, (255, 255, 255)), (0xFFC80000, (200, 0, 0)), (0x00102030, (16, 32, 48))],
)
def test_argb_decoding(packed: int, rgb: tuple[int, int, int]) -> None:
    assert argb_to_rgb(packed) == rgb


def test_argb_encoding_is_signed_and_round_trips() -> None:
    assert rgb_to_argb((200, 0, 0)) == -3670016
    assert rgb_to_argb((255, 0, 0)) == -65536
    rng = random.Random(7)
    for _ in range(200):
        rgb = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        packed = rgb_to_argb(rgb)
        assert -(2**31) <= packed < 2**31 and argb_to_rgb(packed) == rgb
    with pytest.raises(ValueError):
        rgb_to_argb((256, 0, 0))
    with pytest.raises(TypeError):
        argb_to_rgb("red")  # type: ignore[arg-type]


def test_read_and_write_classes(tmp_path: Path) -> None:
    path = tmp_path / "classifiers" / "classes.json"
    write_classes(path, [PathClass("Tumor", (200, 0, 0)), PathClass("Tumor: Positive", (0, 128, 0)),
                         PathClass("Ignore*", None)])
    raw = json.loads(path.read_text())["pathClasses"]
    assert raw[0] == {"name": "Tumor", "color": -3670016}
    classes = read_classes(tmp_path)  # a project folder works too
    assert classes[:2] == [PathClass("Tumor", (200, 0, 0)), PathClass("Tumor: Positive", (0, 128, 0))]
    assert read_classes(tmp_path / "nowhere.json") == []


def test_malformed_classes_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"pathClasses": [{"name": "A", "color": "#ff0000"}]}))
    with pytest.raises(ProjectError, match=r"classes\.json"):
        read_classes(path)
    path.write_text("[]")
    with pytest.raises(ProjectError, match="pathClasses"):
        read_classes(path)


def test_real_qupath_classes(shared_dir: Path) -> None:
    classes = read_classes(shared_dir / "fixtures" / "qupath" / "foci-0.4" / "classifiers" / "classes.json")
    by_name = {c.name: c.color for c in classes}
    assert by_name["Tumor"] == (200, 0, 0) and "Ignore*" in by_name and "Region*" in by_name
    assert by_name["Training"] is not None


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:/data/slides/a%20b.svs", PurePosixPath("/data/slides/a b.svs")),
        ("file:///data/slides/a%20b.svs", PurePosixPath("/data/slides/a b.svs")),
        ("file://localhost/data/x.tif", PurePosixPath("/data/x.tif")),
        ("file:/C:/Users/me/slide%231.ndpi", PureWindowsPath("C:/Users/me/slide#1.ndpi")),
        ("file:///D:/x.svs", PureWindowsPath("D:/x.svs")),
        ("file://server/share/x.svs", PureWindowsPath("//server/share/x.svs")),
        ("file:/data/%C3%A9t%C3%A9.svs", PurePosixPath("/data/été.svs")),
        ("https://example.org/x.svs", None),
        ("omero://host/123", None),
        ("", None),
    ],
)
def test_uri_to_path(uri: str, expected: object) -> None:
    assert uri_to_path(uri) == expected


def test_path_to_uri_is_java_style_and_round_trips(tmp_path: Path) -> None:
    p = tmp_path / "with space" / "été #1.svs"
    uri = path_to_uri(p)
    assert uri.startswith("file:/") and not uri.startswith("file://")
    assert " " not in uri and "#" not in uri
    assert Path(uri_to_path(uri)) == p  # type: ignore[arg-type]
    assert same_uri(uri, p.as_uri())  # Python's file:/// spelling names the same file
    assert not same_uri(uri, path_to_uri(tmp_path / "other.svs"))
