"""Small models and a generated pyramidal slide whose expected classifier output is known exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# Slide geometry (level 0): a green ramp everywhere, a red and a blue polygon.
SLIDE_W, SLIDE_H, SLIDE_MPP = 1024, 768, 0.5
RED_POLY = [(96.0, 80.0), (520.0, 80.0), (520.0, 300.0), (300.0, 300.0), (300.0, 560.0), (96.0, 560.0)]
BLUE_POLY = [(640.0, 360.0), (960.0, 420.0), (900.0, 700.0), (600.0, 680.0)]
CLASSES = ("Red", "Green", "Blue")  # logit k = mean of channel k


class ColourNet(nn.Module):
    """Logits = mean of each channel (after the config's normalisation) times ``gain``: a known function."""

    def __init__(self, gain: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__()
        self.register_buffer("gain", torch.tensor(gain, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * self.gain


class DropoutNet(nn.Module):
    """A tiny conv net with dropout, for MC-dropout checks."""

    def __init__(self, num_classes: int = 2, p: float = 0.5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.drop = nn.Dropout(p)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.head(self.drop(h))


def expected_probs(tiles_uint8: np.ndarray, gain: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """What :class:`ColourNet` must give after ToTensor + Normalize(0.5, 0.5): softmax of gain·mean."""
    x = tiles_uint8.astype(np.float64) / 255.0
    x = (x - 0.5) / 0.5
    logits = x.mean(axis=(1, 2)) * np.asarray(gain)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def config_dict(classes=CLASSES, patch: int = 16, spacing: float = 2.0, **extra) -> dict:
    d = {
        "spec_version": "1.0",
        "architecture": "colournet",
        "num_classes": len(classes),
        "class_names": list(classes),
        "patch_size_pixels": patch,
        "spacing_um_px": spacing,
        "transform": [
            {"name": "Resize", "arguments": {"size": patch}},
            {"name": "ToTensor"},
            {"name": "Normalize", "arguments": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}},
        ],
    }
    d.update(extra)
    return d


def slide_pixels() -> np.ndarray:
    """Level-0 RGB pixels: a diagonal green ramp, grey elsewhere, pure red / blue inside the polygons."""
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:SLIDE_H, 0:SLIDE_W].astype(np.float64)
    img = np.empty((SLIDE_H, SLIDE_W, 3), np.uint8)
    img[..., 0] = 128
    img[..., 2] = 128
    img[..., 1] = np.round(255.0 * (0.45 * xx / SLIDE_W + 0.55 * yy / SLIDE_H)).astype(np.uint8)
    mask = Image.new("L", (SLIDE_W, SLIDE_H), 0)
    ImageDraw.Draw(mask).polygon(RED_POLY, fill=1)
    red = np.asarray(mask, bool)
    mask = Image.new("L", (SLIDE_W, SLIDE_H), 0)
    ImageDraw.Draw(mask).polygon(BLUE_POLY, fill=1)
    blue = np.asarray(mask, bool)
    img[red, 0], img[red, 2] = 255, 0
    img[blue, 0], img[blue, 2] = 0, 255
    return img


def write_slide(path: Path, pixels: np.ndarray | None = None, mpp: float = SLIDE_MPP) -> Path:
    """A 2-level pyramidal tiled TIFF (lossless, level 1 as a SubIFD) with its resolution recorded."""
    from histobridge.testing import build_pyramid, write_pyramid

    pixels = slide_pixels() if pixels is None else pixels
    return write_pyramid(path, build_pyramid(pixels, 2), mpp=mpp, tile=128, layout="subifds")


def save_model(tmp: Path, module: nn.Module, cfg: dict, name: str = "model") -> Path:
    """A WSInfer-style model directory written by histobridge's own exporter."""
    from histobridge.models.classifier import save_classifier

    return save_classifier(module, cfg, tmp / name)


def make_project(folder: Path, slide: Path, annotations: list[dict], classes: dict[str, int] | None = None,
                 name: str = "colours.tif") -> Path:
    """A minimal QuPath project (qpproj + classes.json + exported annotations) around one slide."""
    import json

    from histobridge.qupath import layout

    folder.mkdir(parents=True, exist_ok=True)
    uri = "file:" + slide.resolve().as_posix()
    qpproj = {
        "version": "0.6.0", "createTimestamp": 1767225600000, "modifyTimestamp": 1767225600000,
        "uri": "file:" + (folder / "project.qpproj").resolve().as_posix(), "lastID": 1,
        "images": [{
            "serverBuilder": {
                "builderType": "uri",
                "providerClassName": "qupath.lib.images.servers.bioformats.BioFormatsServerBuilder",
                "uri": uri, "args": ["--series", "0"],
            },
            "entryID": 1, "imageName": name, "metadata": {},
        }],
    }
    (folder / "project.qpproj").write_text(json.dumps(qpproj))
    if classes:
        (folder / "classifiers").mkdir(exist_ok=True)
        (folder / "classifiers" / "classes.json").write_text(
            json.dumps({"pathClasses": [{"name": k, "color": v} for k, v in classes.items()]})
        )
    ann = layout.annotation_path(folder, 1)
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps({"type": "FeatureCollection", "features": annotations}))
    return folder


def annotation(coords: list[tuple[float, float]], path_class: str | None, name: str | None = None) -> dict:
    """A QuPath 0.4+ annotation feature."""
    props: dict = {"objectType": "annotation"}
    if path_class:
        props["classification"] = {"name": path_class, "color": [200, 0, 0]}
    if name:
        props["name"] = name
    ring = [list(map(float, p)) for p in coords] + [list(map(float, coords[0]))]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}


def box_mean(pixels: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Exact area-weighted mean colour of a float rectangle over level-0 pixels (outside = white)."""
    h, w = pixels.shape[:2]
    ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    ix1, iy1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))

    def weights(a: float, b: float, lo: int, hi: int) -> np.ndarray:
        edges = np.arange(lo, hi + 1, dtype=np.float64)
        return np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)

    wx, wy = weights(x0, x1, ix0, ix1), weights(y0, y1, iy0, iy1)
    block = pixels[iy0:iy1, ix0:ix1].astype(np.float64)
    total = np.einsum("y,x,yxc->c", wy, wx, block)
    area = (x1 - x0) * (y1 - y0)
    return (total + 255.0 * (area - wy.sum() * wx.sum())) / area


def tumour_project(tmp: Path, *, half: bool = True) -> tuple[Path, Any]:
    """The colour slide in a project with one "Tumor" annotation (its left half, or all of it), and
    the loaded colour classifier: the set-up the write-back and locking tests share."""
    from histobridge.models.classifier import load_classifier

    slide = write_slide(tmp / "colours.tif")
    right = SLIDE_W / 2 if half else SLIDE_W
    ann = annotation([(0, 0), (right, 0), (right, SLIDE_H), (0, SLIDE_H)], "Tumor", "left" if half else None)
    project = make_project(tmp / "proj", slide, [ann])
    return project, load_classifier(save_model(tmp, ColourNet((4.0, 0.0, 4.0)), config_dict()))
