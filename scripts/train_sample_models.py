"""Rebuild the sample models of ``sample_projects/skin`` from the sample project itself.

Steps: materialise the sample project (slide from the package index), tile its Epidermis/Dermis
annotations twice (classifier: 64 px over 64 µm; GAN: 64 px over 80 µm, denser stride because a
GAN needs more images), train the classifier, train the GAN (resumable: run again to continue),
and copy the small exported files into ``sample_projects/skin/models/``.

    python scripts/train_sample_models.py --work /tmp/skin-work --gan-minutes 60
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from histobridge.evaluation import CLASSIFIER_TILES, GAN_TILES, SAMPLE_CLASSES
from histobridge.tiling.grid import TileSpec

REPO = Path(__file__).resolve().parents[1]


def tile(project_file: Path, store: Path, spec: TileSpec) -> None:
    from histobridge.qupath.project import Project
    from histobridge.tiling.options import TilingOptions
    from histobridge.tiling.tiler import tile_project

    report = tile_project(
        Project.open(project_file), store, spec, TilingOptions(classes=SAMPLE_CLASSES, workers=1)
    )
    if not report.ok:
        raise SystemExit(f"tiling failed: {report.not_done}")
    print(f"{store}: {report.tiles} tiles written ({[i.status for i in report.images]})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="Scratch folder (project, stores, GAN run).")
    ap.add_argument("--models", type=Path, default=REPO / "sample_projects" / "skin" / "models")
    ap.add_argument("--gan-minutes", type=float, default=60.0, help="GAN time budget for this call.")
    ap.add_argument("--gan-kimg", type=float, default=150.0, help="GAN total length (kimg).")
    ap.add_argument("--skip-classifier", action="store_true")
    ap.add_argument("--skip-gan", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch

    from histobridge.models.train_classifier import ClassifierTrainConfig, train_classifier
    from histobridge.models.train_gan import GanTrainConfig, train_gan
    from histobridge.models.training_data import load_tiles
    from histobridge.qupath.sample import init_sample_project

    torch.set_num_threads(args.threads)
    work = args.work.absolute()
    project_file = work / "project" / "project.qpproj"
    if not project_file.exists():
        init_sample_project(work / "project", "skin")
    if not args.skip_classifier:
        tile(project_file, work / "classifier_tiles.zarr", CLASSIFIER_TILES)
        result = train_classifier(
            load_tiles(work / "classifier_tiles.zarr", SAMPLE_CLASSES),
            args.models / "classifier",
            ClassifierTrainConfig(),
        )
        print(json.dumps({k: result.metrics[k] for k in ("heldout_accuracy", "confusion_matrix", "counts")}))
    if not args.skip_gan:
        tile(project_file, work / "gan_tiles.zarr", GAN_TILES)
        # In a short run the generator takes the texture layout from its noise inputs, so seeds
        # rendered with noise_mode="const" share one layout (z sets colour and density). Half of the
        # fake batches use the constant noise buffers in an attempt to move the layout into z; the
        # first 22 kimg of the committed model ran without this (const_noise=0).
        cfg = GanTrainConfig(channel_base=1024, const_noise=0.5, kimg=args.gan_kimg, minutes=args.gan_minutes)
        res = train_gan(load_tiles(work / "gan_tiles.zarr", SAMPLE_CLASSES), work / "gan", cfg)
        print(f"GAN at {res.kimg:.1f} kimg after {res.seconds / 60:.1f} min (finished: {res.finished})")
        export_generator(work / "gan", args.models / "generator")
    return 0


def export_generator(gan_dir: Path, dest: Path) -> None:
    """Copy the exported generator, its training record and the newest sample grid."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("generator.json", "generator.safetensors", "training.json"):
        shutil.copy2(gan_dir / name, dest / name)
    grids = sorted((gan_dir / "samples").glob("grid-*.png"))
    if grids:
        shutil.copy2(grids[-1], dest / "training_grid.png")


if __name__ == "__main__":
    sys.exit(main())
