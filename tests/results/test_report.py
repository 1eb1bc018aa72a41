"""The HTML report as a user sees it: rendered by headless Chromium from disk, one map glyph per
embedded object, galleries with images, and a screenshot; the cluster table beside the map (size,
most typical members, the labels given in each cluster)."""

import html
import os
import re
import shutil
import subprocess

import h5py
import pytest
from conftest import quiet
from pipelines.test_characterise import scored  # noqa: F401  (module-scoped scored catalog)

from tfanomaly.pipelines.characterise import embed
from tfanomaly.pipelines.config import EmbedConfig, EvaluateConfig, ReportConfig
from tfanomaly.pipelines.evaluate import evaluate
from tfanomaly.results.labels import LabelStore
from tfanomaly.results.report import SCORE_LABELS, build_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",
]


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
    embedded = embed(scored / "scores", EmbedConfig(selection="all"), echo=quiet)
    evaluate(scored / "scores", EvaluateConfig(baseline=False))
    shown = build_report(scored / "scores", tmp_path / "report.html", ReportConfig(top_n=6))
    assert shown["map_points"] == embedded["objects"] == 80
    assert shown["map_kinds"] >= 2  # a labelled survey: the anomalies ringed by kind
    page = (tmp_path / "report.html").read_text()
    assert "http://" not in page.split("<body")[1][:2000] and "cdn.bokeh.org" not in page
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [browser, *CHROMIUM_FLAGS, *profile, "--dump-dom", (tmp_path / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    body = re.search(r'<body data-map-points="(\d+)" data-gallery-images="(\d+)"', dom)
    assert body, "the report did not finish rendering in Chromium"
    assert int(body[1]) == 80  # one glyph per embedded object
    assert int(body[2]) == shown["gallery_images"] > 18
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            *profile,
            "--window-size=1200,1600",
            f"--screenshot={screenshot}",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    assert screenshot.stat().st_size > 50_000  # a page with a map and thumbnails, not a blank
    keep = os.environ.get("TFANOMALY_SCREENSHOT_DIR")
    if keep:
        shutil.copy(screenshot, keep)
    with h5py.File(scored / "scores" / "embedding.h5") as f:
        assert len(f["umap_x"]) == 80 and f.attrs["space"] == EmbedConfig.space
    assert f"UMAP of {EmbedConfig.space}" in page


def test_cluster_table_sizes_typical_members_and_labels(tmp_path):
    from explore.helpers import add_clusters

    from results.test_browse import write_results_file

    folder = write_results_file(tmp_path / "scores", n=40)
    (tmp_path / "cae").mkdir()
    members = add_clusters(
        folder, sizes=(9, 6), noise=3, embedding=tmp_path / "cae" / "embedding.h5"
    )
    shown = build_report(
        folder, config=ReportConfig(top_n=2, typical=3), embedding=tmp_path / "cae"
    )
    assert shown["map_points"] == 18 and shown["clusters"] == 2
    assert shown["labels_counted"] is None
    page = html.unescape((folder / "report.html").read_text())  # Bokeh's JSON holds escaped HTML
    assert "<h2>Clusters</h2>" in page and "3 embedded objects are in no cluster" in page
    assert "No label file" in page
    with LabelStore(folder / "labels.sqlite") as store:  # the explorer's label file
        store.set_many(
            [{"object_id": i, "label": "artifact", "tags": ["cluster:0"]} for i in members[0][:5]]
        )
        store.set(members[1][0], label="interesting")
        store.set(7, label="normal")  # an object of another survey: not counted
    shown = build_report(
        folder, config=ReportConfig(top_n=2, typical=3), embedding=tmp_path / "cae"
    )
    assert shown["labels_counted"] == 6
    assert shown["gallery_images"] == 2 * 3 + 2 * len(SCORE_LABELS)
    page = html.unescape((folder / "report.html").read_text())
    table = page[page.index("<h2>Clusters</h2>") :].split("</table>")[0]
    rows = table.split("<tr>")[2:]
    assert len(rows) == 2 and all(r.count("<img ") == 3 for r in rows)
    assert ">9</td>" in rows[0] and ">artifact</b> 5" in rows[0]
    assert ">6</td>" in rows[1] and ">interesting</b> 1" in rows[1]
    typical = [int(t) for t in re.findall(r'title=\\?"(\d+)', rows[0])]
    assert len(typical) == 3 and set(typical) <= set(members[0])
