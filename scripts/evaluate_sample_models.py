"""Check the sample models of ``sample_projects/skin/models`` against their quality bars.

The measurements live in :mod:`histobridge.evaluation` (the tests use the same functions): held-out
accuracy of the classifier (from its ``metrics.json``; recomputed from a tile store with ``--store``),
the share of generated tiles classified as their class, and a montage ``generator/samples.png``.
With ``--gan-store`` (the project tiled at ``evaluation.GAN_TILES``) the realism of generated tiles
per class. With ``--store`` also the colour controls: real tiles recoloured to the other class's colour
statistics must keep their class (bar ``MIN_RECOLOUR``), tiles with shuffled pixels must score near
chance (bar ``MAX_SHUFFLED``); stain-swapped and grey tiles are reported beside them.

Prints a summary and writes ``evaluation.json`` next to the models. Exit code 1 when a bar is missed.

    python scripts/evaluate_sample_models.py [--models DIR] [--seeds 200] [--store classifier_tiles.zarr]
        [--gan-store gan_tiles.zarr [--compare EARLIER/generator.json]]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from histobridge._atomic import write_json
    from histobridge.evaluation import (
        MAX_SHUFFLED,
        MIN_AGREEMENT,
        MIN_HELDOUT,
        MIN_RECOLOUR,
        REALISM_MEASURES,
        evaluate_sample_models,
    )

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=REPO / "sample_projects" / "skin" / "models")
    ap.add_argument("--seeds", type=int, default=200, help="Generated tiles per class.")
    ap.add_argument("--store", type=Path, default=None, help="Classifier tile store to recompute accuracy.")
    ap.add_argument("--gan-store", type=Path, default=None,
                    help="Tile store at the generator's size (evaluation.GAN_TILES) for realism per class.")
    ap.add_argument("--compare", type=Path, default=None,
                    help="An earlier generator.json: with --gan-store, writes generator/before_after.png.")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default: MODELS/evaluation.json).")
    args = ap.parse_args(argv)
    if args.compare is not None and args.gan_store is None:
        ap.error("--compare draws its real tiles from --gan-store; give both")

    report = evaluate_sample_models(args.models, seeds=args.seeds, store=args.store,
                                    gan_store=args.gan_store)
    write_json(args.out or args.models / "evaluation.json", report)
    if args.compare is not None:
        from histobridge.evaluation import write_comparison
        from histobridge.models.checkpoints import load_generator

        before = load_generator(args.compare)
        now = load_generator(args.models / "generator" / "generator.json")
        write_comparison(args.gan_store, [("before", before), ("now", now)],
                         args.models / "generator" / "before_after.png")
    clf, gen = report["classifier"], report["generator"]
    print(f"classifier held-out accuracy: {clf['heldout_accuracy']:.3f} (bar {MIN_HELDOUT}) "
          f"on {clf['heldout_counts']}")  # fmt: skip
    for name, r in gen["per_class"].items():
        print(f"generated {name}: {r['agree']}/{r['n']} classified as {name} ({r['fraction']:.3f})")
    print(f"synthetic agreement: {gen['agreement']:.3f} (bar {MIN_AGREEMENT}); "
          f"montage: {args.models / gen['montage']}")  # fmt: skip
    if "recolour_keeps_class" in clf:
        rec = clf["recolour_keeps_class"]
        print(f"recoloured real tiles keeping their class: {rec['mean']:.3f} (bar {MIN_RECOLOUR}) "
              f"{rec['per_class']}")  # fmt: skip
        print(f"pixel-shuffled real tiles: balanced accuracy {clf['shuffled_balanced_accuracy']:.3f} "
              f"(bar <= {MAX_SHUFFLED}); stain-swapped tiles keeping their class "
              f"{clf['stain_swap_keeps_class']['mean']:.3f}; "
              f"grey tiles {clf['grayscale_balanced_accuracy']:.3f}")
    for name, r in gen.get("realism", {}).get("per_class", {}).items():
        ceiling = r["real_split_half"]
        print(f"realism of generated {name}: " + ", ".join(
            f"{key} {r[key]:.2f} (real vs real {ceiling[key]:.2f})"
            for key in REALISM_MEASURES))
    rep = gen.get("realism_repeats")
    if rep:
        for name, r in rep["per_class"].items():
            print(f"realism of generated {name}, {rep['repeats']} draws: " + ", ".join(
                f"{key} {r[key]['mean']:.2f} ± {r[key]['sd']:.2f}" for key in REALISM_MEASURES))
        print(f"realism score: {gen['realism']['score']:.3f}; over {rep['repeats']} draws "
              f"{rep['score']['mean']:.3f} ± {rep['score']['sd']:.3f}")
    print(f"bars: {report['passed']}")
    return 0 if all(report["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
