"""The explorer page in a real browser (Chromium through Playwright) against a live loopback server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests._server_helpers import LiveServer, sample_project

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.mark.slow
def test_explorer_slider_and_seed_click_change_image_and_prediction(browser, cmu_slide, tmp_path):
    folder = sample_project(tmp_path / "skin")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with LiveServer(folder) as server:
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_function("document.getElementById('status').textContent === 'ready'", timeout=60_000)
        first_src = page.get_attribute("#blend-image", "src")
        first_pred = page.text_content("#blend-pred")
        assert first_src and "blend_0.png" in first_src and "Dermis" in first_pred

        page.fill("#blend-slider", "8")
        page.dispatch_event("#blend-slider", "input")
        assert "blend_8.png" in page.get_attribute("#blend-image", "src")
        assert page.text_content("#blend-pred") != first_pred
        page.screenshot(path=str(shots / "slider.png"))

        page.click("#classify")
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('classify:') && "
            "document.getElementById('status').textContent.includes('tiles')",
            timeout=60_000,
        )
        page.click("#synthesize")
        page.wait_for_selector("#synth-grid img", timeout=60_000)
        page.click("#search")
        page.wait_for_selector("#seeds-table tr[data-seed] img", timeout=60_000)
        job_before = page.get_attribute("#blend-image", "src").split("/")[3]
        row = page.locator("#seeds-table tr[data-seed]").nth(1)
        seed = row.get_attribute("data-seed")
        row.click()
        page.wait_for_function(
            f"document.getElementById('seed').value === '{seed}' && "
            f"!document.getElementById('blend-image').src.includes('{job_before}')",
            timeout=60_000,
        )
        page.wait_for_function(
            "document.getElementById('status').textContent === 'layer blend: done'", timeout=60_000
        )
        page.fill("#blend-slider", "8")
        page.dispatch_event("#blend-slider", "input")
        assert page.text_content("#blend-pred") not in ("", first_pred)
        assert page.locator("#layer-grid img").count() >= 2
        page.screenshot(path=str(shots / "explorer.png"), full_page=True)
        assert not errors, errors
    assert (shots / "explorer.png").stat().st_size > 10_000
    keep = os.environ.get("HISTOBRIDGE_EXPLORER_SCREENSHOT")  # e.g. docs/explorer.png for the README
    if keep:
        shutil.copy(shots / "explorer.png", keep)
