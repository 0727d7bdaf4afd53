"""Token, paths, limits and error documents of the server (sample project, no heavy work)."""

from __future__ import annotations

import os
import time

import pytest

from tests._server_helpers import make_client, sample_project, square


@pytest.fixture(scope="module")
def folder(cmu_slide, tmp_path_factory):
    return sample_project(tmp_path_factory.mktemp("safety") / "skin")


@pytest.fixture(scope="module")
def client(folder):
    with make_client(folder, max_body_bytes=200_000, max_tiles=5_000) as c:
        yield c


def _problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    doc = r.json()
    assert doc["status"] == status and doc["title"] and doc["type"] and doc["detail"]
    return doc


def test_non_loopback_needs_a_token(folder):
    from histobridge.errors import InputError
    from histobridge.server.app import create_app
    from histobridge.server.settings import ServerSettings, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with pytest.raises(InputError, match="needs an access token"):
        create_app(ServerSettings(projects=(folder,), host="0.0.0.0"))


def test_every_request_needs_the_token_when_one_is_set(folder):
    with make_client(folder, host="0.0.0.0", token="s3cret-token") as c:
        for path in ("/api/health", "/api/projects", "/", "/docs", "/api/models"):
            doc = _problem(c.get(path), 401)
            assert "token" in doc["detail"]
        _problem(c.get("/api/health", headers={"Authorization": "Bearer wrong"}), 401)
        _problem(c.post("/api/classify", json={}), 401)
        assert c.get("/api/health", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/api/projects", headers={"X-Histobridge-Token": "s3cret-token"}).status_code == 200


def test_loopback_answers_without_a_token(client):
    assert client.get("/api/health").status_code == 200
    assert client.get("/").status_code == 200


def test_unknown_image_model_job_are_404(client):
    body = {"project": "skin", "roi": square(100, 100, 300), "model": "classifier"}
    assert (
        "no image"
        in _problem(client.post("/api/classify?wait=30", json={**body, "image": "99"}), 404)["detail"]
    )
    doc = _problem(client.post("/api/classify?wait=30", json={**body, "image": "1", "model": "nope"}), 404)
    assert "no classifier 'nope'" in doc["detail"] and "classifier" in doc["detail"]
    _problem(client.get("/api/projects/other/images"), 404)
    _problem(client.get("/api/jobs/123-abc"), 404)
    _problem(client.get("/api/no-such-route"), 404)


def test_bad_input_is_400_and_bad_roi_is_422(client):
    base = {"project": "skin", "image": "1", "model": "classifier"}
    doc = _problem(client.post("/api/classify", json={"project": "skin"}), 400)  # no roi, no model
    assert "roi" in doc["detail"] and "model" in doc["detail"], doc["detail"]
    _problem(
        client.post("/api/classify?wait=30", json={**base, "roi": square(0, 0, 300), "stride_div": 3}), 400
    )
    for roi in (
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": "zz"}},
        {"type": "Point", "coordinates": [1, 2]},
        "not geojson",
        [],
        42,
    ):
        doc = _problem(client.post("/api/classify?wait=30", json={**base, "roi": roi}), 422)
        assert doc["detail"].startswith("roi:")
    r = client.post("/api/classify", content=b"{not json", headers={"content-type": "application/json"})
    _problem(r, 400)


def test_huge_roi_is_refused_before_any_work(client):
    t0 = time.perf_counter()
    doc = _problem(
        client.post(
            "/api/classify?wait=30",
            json={
                "project": "skin",
                "image": "1",
                "model": "classifier",
                "stride_div": 4,
                "roi": square(-1e9, -1e9, 2e9),
            },
        ),
        413,
    )
    assert "limit" in doc["detail"]
    assert time.perf_counter() - t0 < 10


def test_request_body_limit_is_413(client):
    ring = [[float(i % 1000), float(i // 1000)] for i in range(20_000)]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation"},
    }
    doc = _problem(
        client.post(
            "/api/classify", json={"project": "skin", "image": "1", "model": "classifier", "roi": feature}
        ),
        413,
    )
    assert "200,000" in doc["detail"]


def test_only_files_under_served_folders_can_be_named(client, folder, tmp_path):
    base = {"roi": square(100, 100, 300), "model": "classifier"}
    outside = tmp_path / "outside.svs"
    outside.write_bytes(b"x")
    link = folder / "images" / "escape.svs"
    os.symlink(outside, link)
    try:
        for slide in (
            "../../etc/passwd",
            "images/../../x.svs",
            str(outside),
            "file:///etc/passwd",
            "http://example.org/a.svs",
            "images/escape.svs",
            str(link),
        ):
            doc = _problem(client.post("/api/classify?wait=30", json={**base, "slide": slide}), 400)
            assert "served folders" in doc["detail"] or "URL" in doc["detail"]
        _problem(client.post("/api/classify?wait=30", json={**base, "slide": "images/none.svs"}), 404)
        inside = next((folder / "images").glob("*.svs"))
        body = {**base, "roi": square(900, 900, 300), "slide": str(inside.relative_to(folder))}
        r = client.post("/api/classify?wait=60", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["histobridge"]["tiles"] > 0
    finally:
        link.unlink()


def test_error_mapping_is_one_table():
    from histobridge import errors
    from histobridge.server import problems

    cases = {
        errors.AnnotationError("a"): 422,
        errors.InputError("b"): 400,
        errors.ModelError("c"): 400,
        errors.SlideNotFoundError("d"): 404,
        errors.CalibrationError("e"): 422,
        errors.SlideError("f"): 500,
        problems.ConflictError("g"): 409,
        problems.TooLargeError("h"): 413,
        problems.NotFoundError("i"): 404,
        problems.RoiError("j"): 422,
        RuntimeError("secret"): 500,
    }
    for err, status in cases.items():
        doc = problems.problem_for(err)
        assert doc["status"] == status, err
    assert problems.problem_for(RuntimeError("secret"))["detail"] == "RuntimeError"
