"""The live server on the sample project: listings, classify = batch heatmap, synthesis, generator tools."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from tests._server_helpers import annotations, make_client, sample_project, square


@pytest.fixture(scope="module")
def served(cmu_slide, tmp_path_factory):
    folder = sample_project(tmp_path_factory.mktemp("served") / "skin")
    with make_client(folder) as client:
        yield client, folder


def test_listings_describe_projects_images_and_models(served):
    from histobridge.qupath.project import Project

    client, folder = served
    assert client.get("/api/health").json()["status"] == "ok"
    projects = client.get("/api/projects").json()
    assert [p["id"] for p in projects] == ["skin"]
    images = client.get("/api/projects/skin/images").json()
    proj = Project.open(folder)
    entry = proj.images[0]
    expected: dict[str, int] = {}
    for a in proj.annotations(entry).annotations:
        expected[a.path_class or "Unclassified"] = expected.get(a.path_class or "Unclassified", 0) + 1
    with entry.open_slide() as slide:
        assert images[0]["width"], images[0]["height"] == slide.dimensions
        assert images[0]["mpp"] == pytest.approx(slide.mpp)
    assert images[0]["annotations"] == expected
    assert images[0]["mpp_source"] == "slide"
    models = {m["id"]: m for m in client.get("/api/models").json()}
    assert models["classifier"]["kind"] == "classifier" and models["classifier"]["tile_um"] > 0
    assert models["generator"]["kind"] == "generator"
    assert models["generator"]["classes"] == ["Epidermis", "Dermis"]
    schema = client.get("/openapi.json").json()
    assert "/api/classify" in schema["paths"]
    # the request classes of histobridge.server.operations are the bodies, descriptions included
    body = schema["components"]["schemas"]["ClassifyRequest"]
    assert set(body["required"]) == {"roi", "model"}
    assert body["properties"]["model"]["description"] == "classifier id (see /api/models)"


def test_classify_equals_the_batch_heatmap(served, tmp_path):
    """Same grid, same values, same QuPath features as ``run_heatmap`` writes for the image."""
    from histobridge.demo.run import sample_model_paths
    from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap

    client, folder = served
    roi = [
        f
        for f in annotations(client)["features"]
        if (f["properties"].get("classification") or {}).get("name") == "Epidermis"
    ]
    r = client.post(
        "/api/classify?wait=60",
        json={"project": "skin", "image": "1", "roi": roi, "model": "classifier", "stride_div": 2},
    )
    assert r.status_code == 200, r.text
    served_features = r.json()["features"]
    clf_dir, _ = sample_model_paths()
    options = HeatmapOptions(stride_div=2, write_back="none", classes=("Epidermis",))
    report = run_heatmap(folder, clf_dir, tmp_path / "batch", options, device="cpu")
    assert report.ok
    batch_file = next(f for f in report.results[0].files if f.name == "tiles.geojson.gz")
    with gzip.open(batch_file, "rb") as fh:
        batch = json.loads(fh.read())["features"]
    assert len(served_features) == len(batch) == report.results[0].tiles > 20

    def no_id(features):  # each tile gets a fresh object id, as in every batch run
        return [{k: v for k, v in f.items() if k != "id"} for f in features]

    assert no_id(served_features) == no_id(batch)


def test_write_back_replaces_only_this_models_tiles_inside_the_roi(served):
    from histobridge.qupath import layout
    from histobridge.qupath.geojson_read import load_document

    client, folder = served
    target = layout.predictions_path(folder, 1)
    target.unlink(missing_ok=True)
    big, small = square(900, 900, 700), square(1000, 1000, 260)
    body = {"project": "skin", "image": "1", "model": "classifier", "write_back": True}
    first = client.post("/api/classify?wait=60", json={**body, "roi": big}).json()
    assert first["histobridge"]["written"] == str(target)
    n_big = len(load_document(target)["features"])
    assert n_big == len(first["features"]) > 4
    second = client.post("/api/classify?wait=60", json={**body, "roi": small}).json()
    after = load_document(target)["features"]
    assert len(after) == n_big  # the small ROI's tiles replaced the same grid cells, nothing stacked
    ids = {f["id"] for f in after}
    assert all(f["id"] in ids for f in second["features"])


def test_synthesis_gives_real_synthetic_and_swapped_tiles(served):
    from PIL import Image

    from histobridge.synthetic import conditioning as cond

    client, _ = served
    roi = next(
        f
        for f in annotations(client)["features"]
        if (f["properties"].get("classification") or {}).get("name") == "Dermis"
    )
    r = client.post(
        "/api/synthesize?wait=60",
        json={
            "project": "skin",
            "image": "1",
            "roi": roi,
            "generator": "generator",
            "classifier": "classifier",
            "n": 3,
            "seed": 40,
        },
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    region = doc["regions"][0]
    assert region["class"] == "Dermis" and len(region["real"]) == 3
    assert [t["seed"] for t in region["tiles"]] == [40, 41, 42]
    tile = region["tiles"][0]
    assert (tile["class"], tile["swap_class"]) == ("Dermis", "Epidermis")
    assert set(tile["prediction"]) == {"Epidermis", "Dermis"}
    png = client.get(doc["image_base"] + tile["image"])
    assert png.headers["content-type"] == "image/png"
    import io

    got = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
    G = client.app.state.resources.generator("generator")
    want = cond.render_uint8(G, [40, 41, 42], cond.class_weights(2, 1, 3))[0]  # the server's batch
    assert np.array_equal(got, want)
    alone = cond.render_uint8(G, [40], cond.class_weights(2, 1, 1))[0]  # batch 1 takes the grouped path
    assert np.abs(got.astype(int) - alone.astype(int)).max() <= 1  # float rounding at level boundaries


def test_generator_tools_class_blend_layer_blend_seed_search(served):
    client, _ = served
    blend = client.post(
        "/api/blend/class?wait=60",
        json={
            "generator": "generator",
            "classifier": "classifier",
            "seed": 5,
            "class_from": "Epidermis",
            "class_to": "Dermis",
            "steps": 5,
        },
    ).json()
    p = [s["prediction"]["Dermis"] for s in blend["steps"]]
    assert len(p) == 5 and p[-1] > p[0]
    first = client.get(blend["image_base"] + blend["steps"][0]["image"]).content
    last = client.get(blend["image_base"] + blend["steps"][-1]["image"]).content
    assert first != last
    layers = client.post(
        "/api/blend/layers?wait=60", json={"generator": "generator", "seeds": [1, 2], "splits": [0, 5, 10]}
    ).json()
    assert len(layers["cells"]) == 6 and layers["splits"] == [0, 5, 10]
    seeds = client.post(
        "/api/seeds?wait=60",
        json={"generator": "generator", "classifier": "classifier", "count": 20, "thumbnails": 3},
    ).json()
    rows = seeds["rows"]
    assert sorted(r["seed"] for r in rows) == list(range(20))
    assert sum(1 for r in rows if r["images"]) == 3
    rank = {"strong": 0, "weak": 1, "none": 2}
    assert [rank[r["concordance"]] for r in rows] == sorted(rank[r["concordance"]] for r in rows)
