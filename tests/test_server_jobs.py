"""Jobs: a bounded pool with a visible queue, cancel, TTL, progress streams, disconnects, shared slides."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests._server_helpers import make_client, sample_project, square


def _blocker(gate: threading.Event, steps: int = 3):
    def work(ctx):
        for i in range(steps):
            ctx.progress(i, steps)
            gate.wait(5)
        return {"ok": True}

    return work


def test_full_pool_queues_jobs_with_visible_positions_and_drops_none():
    from histobridge.server.jobs import JobManager

    jobs = JobManager(workers=1, ttl_s=60)
    gate = threading.Event()
    try:
        submitted = [jobs.submit("t", _blocker(gate)) for _ in range(5)]
        jobs.wait(submitted[0].job_id, lambda j: j.state == "running", 5)
        positions = [jobs.status(j.job_id)["queue_position"] for j in submitted]
        assert positions == [None, 1, 2, 3, 4]
        assert jobs.counts()["queued"] == 4
        gate.set()
        for j in submitted:
            assert jobs.result(j.job_id, wait_s=10) == {"ok": True}
    finally:
        gate.set()
        jobs.shutdown()


def test_cancel_queued_running_and_finished_jobs():
    from histobridge.server.jobs import JobManager
    from histobridge.server.problems import ConflictError

    jobs = JobManager(workers=1, ttl_s=60)
    gate = threading.Event()
    try:
        running = jobs.submit("t", _blocker(gate, steps=100))
        queued = jobs.submit("t", _blocker(gate))
        jobs.wait(running.job_id, lambda j: j.state == "running", 5)
        assert jobs.cancel(queued.job_id)["state"] == "cancelled"
        jobs.cancel(running.job_id)
        gate.set()
        job = jobs.wait(running.job_id, lambda j: j.state == "cancelled", 10)
        assert job.state == "cancelled" and job.done < 99  # stopped at the next progress report
        with pytest.raises(ConflictError, match="already cancelled"):
            jobs.cancel(running.job_id)
        with pytest.raises(ConflictError, match="cancelled; no result"):
            jobs.result(queued.job_id)
    finally:
        gate.set()
        jobs.shutdown()


def test_finished_results_expire_after_their_ttl():
    from histobridge.server.jobs import JobManager
    from histobridge.server.problems import NotFoundError

    jobs = JobManager(workers=1, ttl_s=0.2)
    try:
        job = jobs.submit("t", lambda ctx: 7)
        assert jobs.result(job.job_id, wait_s=5) == 7
        time.sleep(0.3)
        with pytest.raises(NotFoundError, match="expired"):
            jobs.get(job.job_id)
    finally:
        jobs.shutdown()


def test_failed_job_keeps_its_problem_document():
    from histobridge.errors import AnnotationError
    from histobridge.server.jobs import JobManager

    jobs = JobManager(workers=1)
    try:

        def bad(ctx):
            raise AnnotationError("roi: no area")

        job = jobs.submit("t", bad)
        jobs.wait(job.job_id, lambda j: j.state == "failed", 5)
        assert jobs.status(job.job_id)["error"]["status"] == 422
    finally:
        jobs.shutdown()


# ------------------------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def client(cmu_slide, tmp_path_factory):
    folder = sample_project(tmp_path_factory.mktemp("jobs") / "skin")
    with make_client(folder, workers=1) as c:
        yield c


BIG = {
    "project": "skin",
    "image": "1",
    "model": "classifier",
    "stride_div": 4,
    "roi": square(0, 0, 2200, None),
}


@pytest.mark.slow
def test_cancel_a_running_classification_over_http(client):
    job = client.post("/api/classify", json=BIG).json()
    assert job["state"] in ("queued", "running")
    deadline = time.monotonic() + 30
    while client.get(f"/api/jobs/{job['id']}").json()["done"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 200
    r = client.get(f"/api/jobs/{job['id']}/result?wait=30")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    status = client.get(f"/api/jobs/{job['id']}").json()
    assert status["state"] == "cancelled" and status["done"] < status["total"]
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 409


def test_progress_stream_and_a_client_that_disconnects(client):
    body = {**BIG, "roi": square(600, 600, 700, None), "stride_div": 1}
    job = client.post("/api/classify", json=body).json()
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as r:  # leave after the first event
        assert r.headers["content-type"].startswith("text/event-stream")
        first = next(line for line in r.iter_lines() if line.startswith("data:"))
        assert json.loads(first[5:])["id"] == job["id"]
    done = client.get(f"/api/jobs/{job['id']}/result?wait=60")  # the job went on without its client
    assert done.status_code == 200 and done.json()["histobridge"]["tiles"] > 0
    again = client.post("/api/classify", json=body).json()
    events = []
    with client.stream("GET", f"/api/jobs/{again['id']}/events") as r:
        kind = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line[5:])))
    assert events[-1][0] == "end" and events[-1][1]["state"] == "done"
    totals = {e["total"] for _, e in events if e["total"]}
    assert len(totals) == 1 and events[-1][1]["done"] == totals.pop()


def test_two_jobs_on_one_image_share_its_slide(client):
    res = client.app.state.resources
    body = {"project": "skin", "image": "1", "model": "classifier", "roi": square(800, 800, 600)}
    a = client.post("/api/classify", json=body).json()["id"]
    b = client.post("/api/classify", json=body).json()["id"]
    ra = client.get(f"/api/jobs/{a}/result?wait=60").json()
    rb = client.get(f"/api/jobs/{b}/result?wait=60").json()

    def strip(doc):
        return [(f["geometry"], f["properties"]) for f in doc["features"]]

    assert strip(ra) == strip(rb) and ra["histobridge"]["tiles"] > 0
    assert [k for k in res.slide_cache.cached() if k[0] == "skin"] == [("skin", 1)]
    assert res.model_cache.cached().count(("classifier", "classifier")) == 1
