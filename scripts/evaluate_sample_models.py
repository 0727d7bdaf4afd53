"""Check the sample models of ``sample_projects/skin/models`` against their quality bar.

1. Classifier: held-out accuracy on whole held-out annotations (from its ``metrics.json``, measured
   through the exported TorchScript file; recomputed from a tile store with ``--store``).
2. Generator: for each class, generate tiles from seeds 0..N-1 (``noise_mode='const'``), crop them
   to the classifier's field of view and resize (crop-then-resize), classify, and count how many
   are classified as the class they were generated for.
3. A montage of generated tiles per class, ``generator/samples.png``.

Prints a summary and writes ``evaluation.json`` next to the models. Exit code 1 when a bar is missed.

    python scripts/evaluate_sample_models.py [--models DIR] [--seeds 200] [--store classifier_tiles.zarr]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIN_HELDOUT = 0.90
MIN_AGREEMENT = 0.85


def heldout_from_store(classifier, store: Path, regions: list[int]) -> dict:
    """Held-out accuracy recomputed from the tile store (regions as numbered by ``load_tiles``)."""
    from histobridge.models.train_classifier import heldout_metrics
    from histobridge.models.training_data import load_tiles

    data = load_tiles(store, classifier.class_names)
    test = data.subset(np.isin(data.regions, regions))
    return heldout_metrics(classifier.predict(test.tiles), test.labels, data.class_names)


def synthetic_agreement(G, classifier, seeds: int) -> dict:
    """Per class: fraction of generated tiles the classifier assigns to the conditioning class."""
    from histobridge.synthetic.synthesis import generate

    names = list(classifier.class_names)
    out: dict = {"per_class": {}, "seeds": seeds, "gan_tile_um": G.meta.tile_um,
                 "classifier_tile_um": classifier.config.tile_um}
    hits = total = 0
    for name in G.meta.class_names:
        tiles = generate(G, range(seeds), name, classifier=classifier)
        pred = tiles.predictions.argmax(1)
        agree = int((pred == names.index(name)).sum())
        out["per_class"][name] = {"agree": agree, "n": seeds, "fraction": agree / seeds,
                                  "mean_probability": float(tiles.predictions[:, names.index(name)].mean())}
        hits, total = hits + agree, total + seeds
    out["agreement"] = hits / total
    return out


def write_montage(G, path: Path, per_row: int = 10, rows_per_class: int = 2) -> None:
    """Generated tiles (seeds 0..) per class; two rows per class, the class name on the left."""
    from histobridge.synthetic.synthesis import generate
    from histobridge.viz.pictures import montage, save_png

    cells, labels = [], []
    n = per_row * rows_per_class
    for name in G.meta.class_names:
        raw = generate(G, range(n), name).raw
        for r in range(rows_per_class):
            cells.append(list(raw[r * per_row : (r + 1) * per_row]))
            labels.append(name if r == 0 else "")
    save_png(montage(cells, row_labels=labels, cell_px=96), path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=REPO / "sample_projects" / "skin" / "models")
    ap.add_argument("--seeds", type=int, default=200, help="Generated tiles per class.")
    ap.add_argument("--store", type=Path, default=None, help="Classifier tile store to recompute accuracy.")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default: MODELS/evaluation.json).")
    args = ap.parse_args(argv)

    import torch

    from histobridge._atomic import write_json
    from histobridge.models.checkpoints import load_generator
    from histobridge.models.classifier import load_classifier

    torch.manual_seed(0)
    clf_dir, gen_dir = args.models / "classifier", args.models / "generator"
    classifier = load_classifier(clf_dir, device="cpu")
    metrics = json.loads((clf_dir / "metrics.json").read_text(encoding="utf-8"))
    report: dict = {"classifier": {"heldout_accuracy": metrics["heldout_accuracy"],
                                   "balanced_accuracy": metrics.get("balanced_accuracy"),
                                   "confusion_matrix": metrics["confusion_matrix"],
                                   "heldout_counts": metrics["counts"]["heldout"]}}
    if args.store is not None:
        report["classifier"]["recomputed"] = heldout_from_store(
            classifier, args.store, metrics["regions"]["heldout"])
    G = load_generator(gen_dir / "generator.json")
    report["generator"] = synthetic_agreement(G, classifier, args.seeds)
    write_montage(G, gen_dir / "samples.png")
    report["generator"]["montage"] = "generator/samples.png"
    sizes = {str(p.relative_to(args.models)): p.stat().st_size for p in sorted(args.models.rglob("*"))
             if p.is_file() and p.suffix in (".pt", ".safetensors", ".json", ".png")}
    report["file_bytes"] = sizes
    acc, agree = report["classifier"]["heldout_accuracy"], report["generator"]["agreement"]
    report["passed"] = {"heldout_accuracy": acc >= MIN_HELDOUT, "synthetic_agreement": agree >= MIN_AGREEMENT}
    write_json(args.out or args.models / "evaluation.json", report)
    print(f"classifier held-out accuracy: {acc:.3f} (bar {MIN_HELDOUT}) on {metrics['counts']['heldout']}")
    for name, r in report["generator"]["per_class"].items():
        print(f"generated {name}: {r['agree']}/{r['n']} classified as {name} ({r['fraction']:.3f})")
    print(f"synthetic agreement: {agree:.3f} (bar {MIN_AGREEMENT}); montage: {gen_dir / 'samples.png'}")
    return 0 if all(report["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
