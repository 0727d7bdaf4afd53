"""Rebuild the sample models of ``sample_projects/skin`` from the sample project itself.

Steps: materialise the sample project (slide from the package index), tile its Epidermis/Dermis
annotations twice (classifier: 64 px over 64 µm; GAN: 64 px over 80 µm, denser stride because a
GAN needs more images), train the classifier, train the GAN (resumable: run again to continue),
and copy the small exported files into ``sample_projects/skin/models/``. ``--gan-recipe wide``
trains the 128-px, 128-µm generator on the sample plus the other real H&E of the package index
(``evaluation.GAN_RECIPES``).

The GAN's training set can be written as one ``.npz`` (``--prepare-gan-data``) and trained from it
(``--gan-data``) on a machine with a GPU, which needs only torch and numpy there.

The classifier is trained into the work folder and measured against its bars (held-out balanced
accuracy, recoloured tiles keeping their class, pixel-shuffled tiles near chance; see
histobridge.evaluation); only a classifier that meets them replaces the shipped one. Its recipe
defaults to ``evaluation.CLASSIFIER_RECIPE`` (per-tile Reinhard normalisation, HED jitter, grey tiles).

    python scripts/train_sample_models.py --work /tmp/skin-work --gan-minutes 60
    python scripts/train_sample_models.py --work /tmp/skin-work --skip-classifier --gan-recipe wide \
        --prepare-gan-data
    python scripts/train_sample_models.py --work /tmp/gpu --skip-classifier --gan-recipe wide \
        --gan-data /tmp/skin-work/gan_tiles.npz --gan-batch 64 --device cuda --gan-minutes 8
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histobridge.evaluation import (
    CLASSIFIER_RECIPE,
    CLASSIFIER_TILES,
    GAN_RECIPES,
    SAMPLE_CLASSES,
    GanRecipe,
)
from histobridge.tiling.grid import TileSpec

if TYPE_CHECKING:
    from histobridge.models.train_classifier import ClassifierTrainConfig
    from histobridge.models.training_data import TileArrays

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
    recipe = CLASSIFIER_RECIPE
    ap.add_argument("--stain-norm", choices=("none", "reinhard"), default=recipe["stain_norm"],
                    help="Stain normalisation in the classifier's preprocessing.")
    ap.add_argument("--stain-scale", type=float, default=recipe["stain_scale"], help="HED stain jitter.")
    ap.add_argument("--stain-shift", type=float, default=recipe["stain_shift"])
    ap.add_argument("--grayscale", type=float, default=recipe["grayscale"], help="Share of grey tiles.")
    ap.add_argument("--colour-mix", type=float, default=0.0, help="Share of tiles given another's colours.")
    ap.add_argument("--class-swap", type=float, default=0.0,
                    help="Share of tiles given the other class's colour statistics.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gan-recipe", choices=("shipped", "wide"), default="shipped",
                    help="Tiles, extra H&E and size of the generator (histobridge.evaluation.GAN_RECIPES).")
    ap.add_argument("--gan-batch", type=int, default=16)
    ap.add_argument("--gan-init", type=Path, help="Start G from this exported generator (same size).")
    ap.add_argument("--gan-const-noise", type=float, default=0.5,
                    help="Share of fake batches drawn with the constant noise buffers.")
    ap.add_argument("--gan-ema-kimg", type=float, default=1.0, help="G_ema half-life (kimg).")
    ap.add_argument("--gan-snapshot-kimg", type=float, default=2.0)
    ap.add_argument("--gan-lr", type=float, default=0.0025, help="Learning rate of G and D.")
    ap.add_argument("--gan-keep-snapshots", action="store_true",
                    help="Export G_ema at every snapshot into WORK/gan/snapshots/.")
    ap.add_argument("--gan-select", action="store_true",
                    help="Rank the kept snapshots and the shipped generator by realism on selection "
                         "seeds (evaluation.choose_generator); a snapshot replaces it only if it beats it.")
    ap.add_argument("--device", default="auto", help="GAN training device (auto: CUDA when present).")
    ap.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"))
    ap.add_argument("--gan-data", type=Path, help="Train the GAN from this .npz (no project, no tiling).")
    ap.add_argument("--prepare-gan-data", action="store_true", help="Write WORK/gan_tiles.npz and stop.")
    args = ap.parse_args(argv)
    if args.gan_select and args.gan_data:
        ap.error("--gan-select ranks snapshots against the project's own tiling, which --gan-data skips")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch

    from histobridge.models.train_classifier import ClassifierTrainConfig
    from histobridge.models.train_gan import GanTrainConfig, train_gan
    from histobridge.models.training_data import load_npz, save_npz

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    work = args.work.absolute()
    project_file = work / "project" / "project.qpproj"
    if not args.skip_classifier:
        materialise(project_file)
        tile(project_file, work / "classifier_tiles.zarr", CLASSIFIER_TILES)
        cfg = ClassifierTrainConfig(stain_norm=args.stain_norm, stain_scale=args.stain_scale,
                                    stain_shift=args.stain_shift, grayscale=args.grayscale,
                                    colour_mix=args.colour_mix, class_swap=args.class_swap, seed=args.seed)
        if not train_and_check(work, args.models / "classifier", cfg):
            return 1
    if not args.skip_gan or args.prepare_gan_data:
        gan_recipe = GAN_RECIPES[args.gan_recipe]
        data = load_npz(args.gan_data) if args.gan_data else gan_data(project_file, work, gan_recipe)
        print(f"GAN data: {data.counts()} at {data.tile_um} µm, {data.tile_px} px")
        if args.prepare_gan_data:
            save_npz(data, work / "gan_tiles.npz")
            print(f"{work / 'gan_tiles.npz'} written")
            return 0
        # In a short run the generator takes the texture layout from its noise inputs, so seeds
        # rendered with noise_mode="const" share one layout (z sets colour and density). A share of
        # the fake batches uses the constant noise buffers to move the layout into z.
        gan_cfg = GanTrainConfig(resolution=data.tile_px, channel_base=gan_recipe.channel_base,
                                 channel_max=gan_recipe.channel_max, const_noise=args.gan_const_noise,
                                 batch=args.gan_batch, kimg=args.gan_kimg, minutes=args.gan_minutes,
                                 device=args.device, amp=args.amp, ema_kimg=args.gan_ema_kimg,
                                 snapshot_kimg=args.gan_snapshot_kimg, lr_g=args.gan_lr, lr_d=args.gan_lr,
                                 keep_snapshots=args.gan_keep_snapshots or args.gan_select)
        res = train_gan(data, work / "gan", gan_cfg, init=args.gan_init)
        print(f"GAN at {res.kimg:.1f} kimg after {res.seconds / 60:.1f} min (finished: {res.finished})")
        if args.gan_select:
            select_generator(work, args.models)
        else:
            export_generator(work / "gan", args.models / "generator")
    return 0


def materialise(project_file: Path) -> None:
    from histobridge.qupath.sample import init_sample_project

    if not project_file.exists():
        init_sample_project(project_file.parent, "skin")


def gan_data(project_file: Path, work: Path, recipe: GanRecipe) -> TileArrays:
    """The sample's Epidermis/Dermis tiles, plus (``recipe.extra_he``) the extra H&E, one class each."""
    from histobridge.datasets import fetch
    from histobridge.evaluation import EXTRA_HE, EXTRA_HE_MPP
    from histobridge.models.training_data import concat_tiles, image_tiles, load_tiles

    materialise(project_file)
    tile(project_file, work / "gan_tiles.zarr", recipe.tiles)
    parts = [load_tiles(work / "gan_tiles.zarr", SAMPLE_CLASSES)]
    if recipe.extra_he:
        parts += [image_tiles(fetch(key), name, EXTRA_HE_MPP, recipe.tiles) for key, name in EXTRA_HE]
    return concat_tiles(parts)


def train_and_check(work: Path, dest: Path, cfg: ClassifierTrainConfig) -> bool:
    """Train into ``work/classifier``, measure the bars on the fresh tiles, and replace ``dest`` only
    when every bar is met (a failed recipe never replaces the shipped model)."""
    from histobridge.evaluation import (
        MAX_SHUFFLED,
        MIN_HELDOUT,
        MIN_RECOLOUR,
        classifier_bars,
        form_controls_from_store,
        recolour_from_store,
    )
    from histobridge.models.classifier import load_classifier
    from histobridge.models.train_classifier import train_classifier
    from histobridge.models.training_data import load_tiles

    store, trained = work / "classifier_tiles.zarr", work / "classifier"
    result = train_classifier(load_tiles(store, SAMPLE_CLASSES), trained, cfg)
    m = result.metrics
    clf = load_classifier(trained, device="cpu")
    rec = recolour_from_store(clf, store, m["regions"]["heldout"])
    form = form_controls_from_store(clf, store, m["regions"]["heldout"])
    bars = classifier_bars(m["balanced_accuracy"], rec["mean"], form["shuffled_balanced_accuracy"])
    print(json.dumps({k: m[k] for k in ("heldout_accuracy", "confusion_matrix", "counts", "seconds")}))
    print(f"held-out balanced accuracy {m['balanced_accuracy']:.3f} (bar {MIN_HELDOUT}); recoloured real "
          f"tiles keeping their class {rec['mean']:.3f} (bar {MIN_RECOLOUR}) {rec['per_class']}; "
          f"pixel-shuffled tiles {form['shuffled_balanced_accuracy']:.3f} (bar <= {MAX_SHUFFLED}); "
          f"stain-swapped tiles keeping their class {form['stain_swap_keeps_class']['mean']:.3f}; "
          f"grey tiles {form['grayscale_balanced_accuracy']:.3f}")
    if not all(bars.values()):
        missed = [k for k, ok in bars.items() if not ok]
        print(f"bars missed: {', '.join(missed)}; {dest} left as it was (the new model is in {trained})")
        return False
    install(dest, {p.name: p for p in trained.iterdir() if p.is_file()})
    print(f"{dest}: replaced (all classifier bars met)")
    return True


def select_generator(work: Path, models: Path) -> None:
    """Put the most realistic of the run's snapshots in place of the shipped generator, if it beats it.

    The ranking (``selection.json`` beside the generator) uses selection seeds and real tiles disjoint
    from the ones ``evaluate_sample_models.py`` reports; only snapshots meeting the agreement bar count.
    """
    from histobridge.evaluation import choose_generator
    from histobridge.models.classifier import load_classifier

    gan_dir, dest = work / "gan", models / "generator"
    store = work / "gan_tiles.zarr"  # written by gan_data(); main() refuses --gan-select with --gan-data
    shipped = dest / "generator.json"
    snaps = sorted((gan_dir / "snapshots").glob("generator-*img.json"))
    candidates = ([shipped] if shipped.exists() else []) + snaps
    ranking = choose_generator(candidates, store, load_classifier(models / "classifier", device="cpu"),
                               progress=print)
    best = ranking["best"]
    if best is None or Path(best) == shipped:
        print(f"{dest}: kept (no snapshot beat it on realism with the agreement bar met)")
        return
    winner = Path(best)
    files = {"generator.json": winner, "generator.safetensors": winner.with_suffix(".safetensors"),
             "training.json": gan_dir / "training.json"}
    grid = gan_dir / "samples" / winner.name.replace("generator-", "grid-").replace(".json", ".png")
    if grid.exists():
        files["training_grid.png"] = grid
    install(dest, files, {"selection.json": {**ranking, "best": winner.name, "candidates": [
        {**row, "generator": Path(row["generator"]).name} for row in ranking["candidates"]]}})
    print(f"{dest}: replaced by {winner.name} (realism ranking in {dest / 'selection.json'})")


def install(dest: Path, files: dict[str, Path], records: dict[str, Any] | None = None) -> None:
    """Put exactly ``files`` (name: source) and ``records`` (name: JSON) in place of the folder ``dest``:
    staged beside it and swapped in whole, so a failure midway leaves the shipped model as it was."""
    from histobridge._atomic import replace_dir, write_json

    staged = dest.parent / f".{dest.name}.new"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for name, src in files.items():
        shutil.copy2(src, staged / name)
    for name, doc in (records or {}).items():
        write_json(staged / name, doc)
    replace_dir(staged, dest)


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
