"""The demo's HTML report: what was done, the pictures, the figures, and how to open it in QuPath."""

from __future__ import annotations

from importlib.resources import as_file
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histobridge.report.html import Report
from histobridge.synthetic.controls import COLOUR_MARGIN

if TYPE_CHECKING:
    from histobridge.demo.run import DemoRun

_QUPATH_STEPS = """\
1. In QuPath (0.4 or newer): File > Open project... and choose {project}.
2. Open the image (double-click it in the Project tab). The Epidermis, Dermis and Background
   annotations appear as drawn.
3. Automate > Project scripts > import_results (the demo copied it into {script}).
   The classifier's tiles are imported under their annotations; earlier histobridge tiles are
   replaced, never duplicated. For several images: open it in the script editor, Run > Run for project.
4. Measure > Show measurement maps, and pick "{prefix}: Epidermis probability" (or Dermis).
"""


def _heatmap_pictures(run: DemoRun) -> list[tuple[Path, str]]:
    pics = [p for p in run.files["heatmap"] if p.suffix == ".png"]
    return [(p, p.stem.replace("_", " ")) for p in sorted(pics)]


def _sample_picture() -> Path | None:
    from histobridge.qupath.sample import sample_template

    with as_file(sample_template("skin") / "annotations.png") as p:
        return Path(p) if Path(p).exists() else None


def _pct(v: float) -> str:
    return f"{v:.3f}"


def _summary_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    lo, hi = m["classifier_heldout_ci95"]
    return [
        {"figure": "annotated tiles in the Zarr store", "value": m["tiles"], "control": ""},
        {"figure": "heatmap tiles written back to QuPath", "value": m["heatmap_tiles"], "control": ""},
        {
            "figure": "classifier balanced accuracy on held-out regions (measured in this run)",
            "value": f"{m['classifier_heldout_accuracy']:.3f} (95 % CI {lo:.3f}–{hi:.3f}, "
            f"{m['classifier_heldout_tiles']} tiles)",
            "control": f"caveat: {m['classifier_heldout_caveat']}",
        },
        {
            "figure": "synthetic tiles classified as their conditioning class",
            "value": _pct(m["synthetic_agreement"]),
            "control": f"colour-only baseline: {_pct(m['colour_baseline_synthetic_agreement'])}",
        },
        {
            "figure": "class-swapped twins classified as their new class",
            "value": _pct(m["swapped_agreement"]),
            "control": f"colour-only baseline: {_pct(m['colour_baseline_swapped_agreement'])}",
        },
        {
            "figure": f"strong class-swap seeds ({m['swap_direction']})",
            "value": _pct(m["strong_swap_rate"]),
            "control": f"colour-only baseline: {_pct(m['colour_baseline_strong_swap_rate'])}",
        },
        {"figure": "weak class-swap seeds", "value": _pct(m["weak_swap_rate"]), "control": ""},
        {
            "figure": "real tiles that keep their class when recoloured to the other class",
            "value": _pct(m["recolour_keeps_class"]),
            "control": "a colour detector scores about 0",
        },
        {
            "figure": "balanced accuracy on grayscale real tiles",
            "value": _pct(m["grayscale_balanced_accuracy"]),
            "control": "0.5 is chance",
        },
        {
            "figure": "real tiles that keep their class when their H and E amounts take the other class's",
            "value": _pct(m["stain_swap_keeps_class"]),
            "control": "harder than recolouring for a classifier that normalises colour",
        },
        {
            "figure": "balanced accuracy on real tiles with their pixels shuffled (colour kept, form gone)",
            "value": _pct(m["shuffled_balanced_accuracy"]),
            "control": "0.5 is chance; a colour detector scores high",
        },
        {"figure": "seeds searched", "value": m["seeds_searched"], "control": ""},
    ]


def reads_form(m: dict[str, Any]) -> bool:
    """The classifier passes the colour controls: recolouring keeps the class, shuffling loses it."""
    from histobridge.evaluation import MAX_SHUFFLED, MIN_RECOLOUR

    return bool(m.get("recolour_keeps_class", 0.0) >= MIN_RECOLOUR
                and m.get("shuffled_balanced_accuracy", 1.0) <= MAX_SHUFFLED)


def _colour_verdict(m: dict[str, Any]) -> str:
    """One sentence on whether colour alone explains the synthetic figures."""
    carried = [k for k, v in m["colour_carries"].items() if v]
    if not carried:
        return (
            "The colour-only baseline falls clearly below the classifier on every synthetic figure: "
            "the classifier's verdicts on synthetic tiles use more than their mean colour."
        )
    if reads_form(m):
        return (
            f"The colour-only baseline does as well as the classifier on "
            f"{', '.join(k.replace('_', ' ') for k in carried)} (within {COLOUR_MARGIN:g}): the generator "
            f"paints each class its colour. The classifier itself does not go by colour: recoloured real "
            f"tiles keep their class {m['recolour_keeps_class']:.0%} of the time, stain-swapped ones "
            f"{m['stain_swap_keeps_class']:.0%}, and pixel-shuffled tiles (colours kept, form gone) score "
            f"{m['shuffled_balanced_accuracy']:.2f} balanced accuracy, near chance. So its verdicts on "
            f"synthetic tiles follow the form the generator draws; the baseline's agreement says only that "
            f"colour and form go together in these tiles."
        )
    return (
        f"Colour carries the explanation: a rule that sees only a tile's mean colour does as well as "
        f"the classifier on {', '.join(k.replace('_', ' ') for k in carried)} (within "
        f"{COLOUR_MARGIN:g}). These figures show that the generator paints each class its colour; "
        f"they do not show that it draws class morphology. "
        f"Recoloured real tiles keep their class {m['recolour_keeps_class']:.0%} of the time."
    )


def write_demo_report(run: DemoRun, metrics: dict[str, Any], path: Path) -> Path:
    """Assemble ``report.html`` from what the demo's stages produced (see :mod:`histobridge.demo.run`)."""
    from histobridge.qupath import layout

    clf = run.models.classifier
    rep = Report(
        "histobridge demo: skin H&E, Epidermis vs Dermis",
        lead=(
            "CMU-1-Small-Region (Aperio, 0.499 µm/px) as a QuPath project; a small tile classifier and a "
            "class-conditional StyleGAN2 trained on its annotated Epidermis and Dermis regions. The "
            "synthetic images show what the generator learnt to separate the two classes; they are for "
            "explanation and teaching, not diagnosis."
        ),
    )
    rep.heading("Summary")
    rep.table(_summary_rows(metrics), ["figure", "value", "control"])
    rep.paragraph(_colour_verdict(metrics))
    rep.heading("1. The QuPath project and its annotations")
    pic = _sample_picture()
    if pic:
        rep.figure(
            pic,
            "Annotations as stored in the project (Epidermis blue, Dermis orange, Background grey)",
            width=520,
        )
    rep.paragraph(
        f"Tiles of {clf.config.patch_size_pixels} px over {clf.config.tile_um:g} µm were cut from every "
        f"Epidermis and Dermis annotation (at least half the tile inside, holes excluded) into "
        f"{run.store.name}."
    )
    rep.heading("2. Classifier heatmap, written back into QuPath")
    rep.figures(_heatmap_pictures(run))
    data_file = layout.qpdata_path(run.project.folder, run.project.images[0].entry_id)
    rep.paragraph(
        "Each tile is a QuPath tile object whose measurements hold the class probabilities, written "
        f"straight into QuPath's data file {data_file}"
        f" under the annotations: open {run.project.path} in QuPath and choose Measure → Show "
        "measurement maps."
    )
    _synthetic_section(rep, run)
    _seed_section(rep, run)
    _blend_section(rep, run)
    _counterfactual_section(rep, run)
    _teach_section(rep, run)
    rep.heading("6. Timings")
    rows = [{"stage": k, "seconds": float(v)} for k, v in metrics["seconds"].items()]
    rows.append({"stage": "all stages before this report", "seconds": float(sum(r["seconds"] for r in rows))})
    rep.table(rows, ["stage", "seconds"])
    rep.heading("7. Open the result in QuPath")
    rep.code(
        _QUPATH_STEPS.format(project=run.project.path, script=run.project.folder / "scripts", prefix=clf.name)
    )
    return rep.write(path)


def _synthetic_section(rep: Report, run: DemoRun) -> None:
    rep.heading("3. Matched synthetic tiles: real | synthetic | class-swapped")
    rep.paragraph(
        "For every annotated region the generator made as many tiles as the region has real tiles, "
        "at the region's own µm/px (the GAN tile is centre-cropped to the field of view, then resized). Each "
        "synthetic tile has a twin from the same seed conditioned on the other class: what changes between "
        "the two rows is what the generator ties to the class."
    )
    for path, caption in _largest_montages(run, per_class=2):
        rep.figure(path, caption)
    c = run.controls
    rep.paragraph(
        "Controls for these montages (the same tiles, judged by a rule that sees only mean colour):"
    )
    rep.table(
        [
            {
                "tiles": key,
                "classifier": f"{c[key]['classifier_agreement']:.3f}",
                "colour-only baseline": f"{c[key]['colour_baseline_agreement']:.3f}",
                "same top class": f"{c[key]['classifier_equals_baseline']:.3f}",
                "colour carries it": "yes" if c[key]["colour_carries"] else "no",
            }
            for key in ("synthetic", "swapped")
        ],
        ["tiles", "classifier", "colour-only baseline", "same top class", "colour carries it"],
    )
    rec, gray, held, shuf = c["recolour"], c["grayscale"], c["heldout"], c["shuffled"]
    base_keeps = ", ".join(f"{k} {v:.3f}" for k, v in rec["colour_baseline_keeps_class"].items())
    rep.paragraph(
        "Real tiles recoloured to the other class's colour statistics keep their class: "
        + ", ".join(f"{k} {v:.3f}" for k, v in rec["keeps_class"].items())
        + f" (colour-only baseline: {base_keeps}). "
        f"Grayscale real tiles: balanced accuracy {gray['balanced_accuracy']:.3f}. "
        "Real tiles with their H and E amounts set to the other class's keep their class: "
        + ", ".join(f"{k} {v:.3f}" for k, v in c["stain_swap"]["keeps_class"].items()) + ". "
        f"Pixel-shuffled real tiles: balanced accuracy {shuf['balanced_accuracy']:.3f} (colour-only "
        f"baseline {shuf['colour_baseline_balanced_accuracy']:.3f}). "
        f"Held-out regions: classifier {held['balanced_accuracy']:.3f}, colour-only baseline "
        f"{held['colour_baseline_balanced_accuracy']:.3f} (balanced accuracy; {held['caveat']})."
    )
    _realism_paragraph(rep, run)
    rep.paragraph(f"Montages of every region are in {run.out / 'synthetic'}.")


def _largest_montages(run: DemoRun, per_class: int) -> list[tuple[Path, str]]:
    """The montages of the regions with the most tiles, ``per_class`` for each class."""
    import re

    from PIL import Image

    from histobridge.tiling.store import open_store

    store = open_store(run.store)
    picked: dict[str, list[tuple[int, Path, str]]] = {}
    for path in run.files["montages"]:
        m = re.fullmatch(r"(.+)_region(\d+)", path.stem)
        if not m or m.group(1) not in store:
            continue
        region = store.group(m.group(1)).attrs["regions"][int(m.group(2))]
        cls = str(region.get("class"))
        with Image.open(path) as im:
            width = im.width
        label = f"{cls} region {int(m.group(2))} of image {m.group(1)}: real | synthetic {cls} | swapped twin"
        picked.setdefault(cls, []).append((width, path, label))
    out = []
    for items in picked.values():
        out += [(p, c) for _, p, c in sorted(items, key=lambda t: -t[0])[:per_class]]
    return out


def _seed_section(rep: Report, run: DemoRun) -> None:
    rep.heading("4. Seeds that swap class")
    for (a, b), res in run.seeds.items():
        c = res.counts()
        rep.paragraph(
            f"{a} → {b}: {len(res.rows)} seeds, strong {c.get('strong', 0)}, weak {c.get('weak', 0)}, "
            f"none {c.get('none', 0)} (thresholds {', '.join(f'{t:g}' for t in res.thresholds.as_tuple())}, "
            "on the classifier's probability of the target class). With two classes the reverse direction "
            "is this search read backwards, so it is not run."
        )
    bs = run.baseline_seeds
    clf_strong = run.seeds[next(iter(run.seeds))].counts().get("strong", 0) / max(1, len(bs["verdicts"]))
    rep.paragraph(
        f"Control: the colour-only baseline, judging the very same images with the same thresholds, calls "
        f"{bs['strong_swap_rate']:.3f} of the seeds strong swaps (classifier: "
        f"{clf_strong:.3f}); it gives the same verdict as the classifier for "
        f"{bs['same_verdict_as_classifier']:.3f} of the seeds, "
        f"and {bs['strong_for_both']} seeds are strong for both."
    )
    best = run.seeds[next(iter(run.seeds))].best(10)
    rep.table(
        [r.to_row() for r in best],
        ["seed", "class_start", "class_end", "pred_start", "pred_end", "concordance"],
    )


CLASS_A_B = "Epidermis → Dermis"


def _gif_figure(rep: Report, path: Path, caption: str) -> None:
    """An animated GIF inlined like the PNG figures (the report stays one file)."""
    import base64
    import html

    data = base64.b64encode(path.read_bytes()).decode("ascii")
    rep.paragraph(
        f'<figure><img src="data:image/gif;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>",
        raw=True,
    )


def _blend_section(rep: Report, run: DemoRun) -> None:
    rep.heading("5. Class blending and layer blending")
    rep.paragraph(
        "Class blending moves one seed's class label from Epidermis to Dermis in equal steps (a soft one-hot "
        "label, the same as interpolating the class embeddings); the caption under each image is the "
        "classifier's probability. Layer blending keeps class A's style vectors for the first k layers "
        "and takes class B's for the rest; this generator has "
        f"{run.models.G.num_ws} layers. Which layers carry structure and which carry colour is read from "
        "the grid, not assumed: in this small generator the rows change mostly in colour."
    )
    for blend, paths in run.blends:
        rep.figure(paths["png"], f"seed {blend.seed}: {blend.class_from} → {blend.class_to}")
    ex = run.explain
    rep.figure(
        ex["curve_paths"]["png"],
        "interpolation-probability curve: the end class's probability along "
        "the blend, min-max normalised per seed, mean ± SD over the strong and the weak seeds "
        f"(CSV: {ex['curve_paths']['csv'].name})",
    )
    _gif_figure(
        rep,
        ex["gif"],
        f"seed {ex['gif_seed']} blended {CLASS_A_B}, {ex['gif_frames']} frames, "
        f"{ex['gif_window_frames']} of them inside the transition window (P between 0.25 and 0.75); "
        "each frame carries the classifier's prediction",
    )
    corr = ex["gif_colour_correlation"]
    rep.paragraph(
        f"Control: along this blend the classifier's P(end class) correlates {corr:.2f} with the tile's mean "
        "red minus blue. A value near 1 means the blend can be read as a colour change alone."
    )
    rep.figure(
        ex["annotated_grid_png"],
        "layer blending with predictions: row k keeps class A's w at layers "
        "0..k-1 and class B's after; every cell shows the classifier's P(B) and top class",
    )
    rep.paragraph(
        "Per-layer sensitivity: the change in prediction when only one w vector is taken from the "
        "other class (mean over the grid's seeds)."
    )
    rows = ex["sensitivity"]
    rep.table(
        [{k: (f"{v:+.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        list(rows[0]) if rows else None,
    )


def _counterfactual_section(rep: Report, run: DemoRun) -> None:
    cf = run.explain.get("counterfactuals") or {}
    records = cf.get("records") or []
    rep.heading("5b. Counterfactuals of real tiles")
    if not records:
        rep.paragraph("No real tiles were projected (invert_tiles = 0).")
        return
    settings = cf["settings"]
    rep.paragraph(
        "Real held-out tiles were projected into the generator's W+ space (one w per layer, "
        f"{settings.steps} Adam steps from the class's mean w; loss: pixel L1 + L2 and a feature loss in a "
        f"{cf['feature_net']}, nothing downloaded), then moved along the class direction "
        "w + t·(mean w of the other class − mean w of its own). Each row: the real tile, its projection, "
        "then the projection moved to the other class; the captions give the classifier's probability of "
        "the other class."
    )
    rep.figure(cf["png"], "real | projection | counterfactual blend (t up to 1)")
    rows = []
    for r in records:
        to = r["class_to"]
        rows.append(
            {
                "tile": f"{r['class_from']} tile {r['tile']}",
                "reconstruction PSNR (dB)": f"{r['psnr_db']:.1f}",
                "P(other) real": f"{r['p_original'][to]:.3f}",
                "P(other) projection": f"{r['p_reconstruction'][to]:.3f}",
                "P(other) counterfactual": f"{r['p_counterfactual'][to]:.3f}",
            }
        )
    rep.table(rows)
    rep.paragraph(
        "Control: a projection that the classifier already reads differently from the real tile (compare "
        "the first two columns) says the generator cannot draw that tile; its counterfactual explains the "
        "generator's version, not the tile. The colour controls of section 3 apply here too: if colour "
        "carries the explanation, the counterfactual mostly recolours the tile."
    )


def _realism_paragraph(rep: Report, run: DemoRun) -> None:
    r = run.controls.get("realism") or {}
    if "precision" not in r:
        rep.paragraph(f"Realism not measured: {r.get('skipped', 'no synthetic tiles')}.")
        return
    ceil = r["real_split_half"]
    rep.paragraph(
        f"Realism (features: {r['feature_space']}; nothing downloaded): precision {r['precision']:.2f}, "
        f"recall {r['recall']:.2f}, density {r['density']:.2f}, coverage {r['coverage']:.2f} "
        f"(two halves of the real tiles score precision {ceil['precision']:.2f}, "
        f"recall {ceil['recall']:.2f}, "
        f"density {ceil['density']:.2f}, coverage {ceil['coverage']:.2f}). Nearest real neighbour: median "
        f"distance {r['nn_synthetic_to_real_median']:.2f} for synthetic tiles vs "
        f"{r['nn_real_to_real_median']:.2f} between real tiles; "
        f"{r['synthetic_closer_than_real_5th_percentile']:.0%} of synthetic tiles sit closer to a real tile "
        "than "
        "95 % of real tiles sit to each other (a memorisation flag)."
    )
    sheet = run.controls.get("blinded_sheet") or {}
    if sheet:
        rep.figure(
            Path(sheet["png"]),
            "blinded sheet: real and synthetic tiles shuffled, numbered row by "
            "row "
            f"(the key is in {Path(sheet['key']).name}); can you tell them apart?",
        )


def _teach_section(rep: Report, run: DemoRun) -> None:
    """Where the teaching stage's quiz, sheet and QuPath project are (links relative to the report)."""
    if not run.teach:
        return
    t = run.teach
    items = t.get("items", {})
    rep.heading("5c. Teaching material")
    rep.paragraph(
        f'<a href="teach/{t["quiz"]}">The quiz</a> (two matched forms of {t["questions_per_form"]} '
        "questions: which class? real or synthetic? which of a class-swapped pair?), its answer key "
        f'<code>teach/{t["answer_key"]}</code>, a <a href="teach/{t["sheets"][0]}">teaching sheet</a> and a '
        f"QuPath project of synthetic mosaics, <code>teach/{t['qupath_project']}</code>. Pool: "
        f"{items.get('real', 0)} real tiles ({items.get('real_held_out', 0)} held out as the nearest "
        f"neighbours of synthetic ones), {items.get('synthetic', 0)} synthetic, {items.get('swapped', 0)} "
        "in swapped pairs. Score answers with <code>histobridge teach score</code>.",
        raw=True,
    )
