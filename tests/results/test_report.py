"""The HTML report as a user sees it: rendered by headless Chromium from disk, one map glyph per
embedded object, galleries with images, and a screenshot."""

import os
import re
import shutil
import subprocess

import h5py
import pytest
from conftest import quiet
from pipelines.test_characterise import scored  # noqa: F401  (module-scoped scored catalog)

from tfanomaly.pipelines.characterise import embed, train_cae
from tfanomaly.pipelines.config import CaeTrainConfig
from tfanomaly.pipelines.evaluate import evaluate
from tfanomaly.results.report import build_report

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=20000",
]  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium for this test")
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    return found


@pytest.mark.slow
def test_report_renders_in_headless_chromium(scored, tmp_path):  # noqa: F811
    browser = chromium()
    config = CaeTrainConfig(selection="all", steps=2, batch_size=8, checkpoint_every=2)
    train_cae(scored / "scores", tmp_path / "cae", config, progress=False, echo=quiet)
    embedded = embed(tmp_path / "cae")
    evaluate(scored / "scores", baseline=False)
    shown = build_report(scored / "scores", tmp_path / "report.html", cae_dir=tmp_path / "cae",
                         top_n=6)  # fmt: skip
    assert shown["map_points"] == embedded["objects"] == 80
    page = (tmp_path / "report.html").read_text()
    assert "http://" not in page.split("<body")[1][:2000] and "cdn.bokeh.org" not in page
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, *profile, "--dump-dom",
                          (tmp_path / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=180).stdout  # fmt: skip
    body = re.search(r'<body data-map-points="(\d+)" data-gallery-images="(\d+)"', dom)
    assert body, "the report did not finish rendering in Chromium"
    assert int(body[1]) == 80  # one glyph per embedded object
    assert int(body[2]) == shown["gallery_images"] > 18
    screenshot = tmp_path / "report.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, *profile, "--window-size=1200,1600",
                    f"--screenshot={screenshot}", (tmp_path / "report.html").as_uri()],
                   capture_output=True, timeout=180, check=True)  # fmt: skip
    assert screenshot.stat().st_size > 50_000  # a page with a map and thumbnails, not a blank
    keep = os.environ.get("TFANOMALY_SCREENSHOT_DIR")
    if keep:
        shutil.copy(screenshot, keep)
    with h5py.File(tmp_path / "cae" / "embedding.h5") as f:
        assert len(f["umap_x"]) == 80
