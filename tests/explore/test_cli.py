"""``tfanomaly explore`` as a user runs it: a server process that survives SIGKILL without losing a
committed label, starts without TensorFlow, stops on Ctrl-C; and ``labels export|import``."""

import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import BIG_ID
from results.test_browse import write_results_file

from explore.helpers import get, interrupt_explore, post, start_explore, wait_for
from tfanomaly.cli import main
from tfanomaly.results.labels import LabelStore

LABELS = ("interesting", "artifact", "normal")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return write_results_file(tmp_path_factory.mktemp("explore_cli") / "scores", n=40, seed=2)


def test_sigkill_mid_labelling_loses_no_committed_label(results, tmp_path):
    labels = tmp_path / "shared" / "labels.sqlite"
    process, url = start_explore(results, "--labels", labels, "--rerank-every", "3")
    try:
        wait_for(url, lambda s: s["ranker"] == "ready")
        ids = [o["id"] for o in get(url, "/api/queue?size=40")["objects"]]
        given = {}
        for k, oid in enumerate(ids[:8]):
            body = {"object_id": oid, "label": LABELS[k % 3], "tags": [f"t{k}"]}
            if k % 2:
                body["note"] = f"note {k}: ünïcode"
            given[oid] = post(url, "/api/labels", body)["object"]  # 200: committed
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    process, url = start_explore(results, "--labels", labels)
    try:
        state = wait_for(url, lambda s: s["ranker"] == "ready" and not s["reranking"])
        assert state["labelled"] == 8
        back = get(url, "/api/labels")["labels"]
        assert set(back) == set(given)
        for oid, shown in given.items():
            for field in ("label", "tags", "note", "time", "version"):
                assert back[oid][field] == shown[field], (oid, field)
        order = [o["id"] for o in get(url, "/api/queue?size=40")["objects"]]
        assert set(order[-8:]) == set(given)  # the restarted queue is ranked with the labels
    finally:
        out = interrupt_explore(process)
    assert process.returncode == 0 and "stopped; every label given is in" in out
    with LabelStore(labels) as store:
        assert {str(i) for i in store.current()} == set(given)


def test_the_command_says_what_to_rerun_without_cubes(tmp_path):
    folder = write_results_file(tmp_path / "plain", n=5, images=False)
    process, url = start_explore(folder)
    try:
        printed = "".join(process.printed)
        assert f"--out {folder} --store-images" in printed and "tfanomaly score" in printed
        assert get(url, "/api/info")["images_hint"] in printed
    finally:
        process.terminate()
        process.wait(30)


def test_explorer_serves_and_reranks_without_tensorflow(results, tmp_path):
    script = (
        "import sys, time, urllib.request, json\n"
        "from tfanomaly.explore import explorer_server\n"
        "from tfanomaly.pipelines.config import ExploreConfig\n"
        f"server = explorer_server({str(results)!r}, ExploreConfig(port=0, rerank_every=1),\n"
        f"                         {str(tmp_path / 'l.sqlite')!r}, echo=lambda *_: None)\n"
        "server.start_in_thread()\n"
        "def get(path):\n"
        "    return urllib.request.urlopen(server.url.rstrip('/') + path).read()\n"
        "while json.loads(get('/api/state'))['ranker'] != 'ready': time.sleep(0.05)\n"
        "oid = json.loads(get('/api/queue'))['objects'][0]['id']\n"
        "get(f'/api/images/{oid}.png'); get(f'/api/similar/{oid}')\n"
        "request = urllib.request.Request(server.url + 'api/labels', method='POST',\n"
        "    data=json.dumps({'object_id': oid, 'label': 'normal'}).encode(),\n"
        "    headers={'Content-Type': 'application/json'})\n"
        "urllib.request.urlopen(request).read()\n"
        "while json.loads(get('/api/state'))['version'] != 1: time.sleep(0.05)\n"
        "server.stop()\n"
        "print('tensorflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_explore_errors_are_one_line(results, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["explore", str(tmp_path)])
    assert (
        result.exit_code == 1 and "error:" in result.output and "no such results" in result.output
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(
            main,
            ["explore", str(results), "--port", str(port), "--labels", str(tmp_path / "l.sqlite")],
        )
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output
    result = runner.invoke(main, ["explore", str(results), "--rerank-every", "0"])
    assert result.exit_code == 1 and "rerank-every must be in 1-" in result.output
    result = runner.invoke(main, ["explore", "--help"], terminal_width=100)
    assert result.exit_code == 0
    for words in ("1 interesting", "u undo", "m more like this", "--rerank-every", "[default: 10]"):
        assert words in " ".join(result.output.split()), words


def test_labels_export_and_import_commands(results, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["labels", "export", str(results), str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and "no labels yet" in result.output
    store_path = tmp_path / "mine.sqlite"
    with LabelStore(store_path) as store:
        store.set(BIG_ID, label="interesting", tags=["merger"], note="two nuclei")
        store.set(BIG_ID + 3, label="artifact")
    for suffix in (".csv", ".fits"):
        out = tmp_path / f"labels{suffix}"
        result = runner.invoke(
            main, ["labels", "export", str(results), str(out), "--labels", str(store_path)]
        )
        assert result.exit_code == 0, result.output
        assert "exported 2 labelled objects" in result.output and out.exists()
    colleague = tmp_path / "colleague.csv"
    colleague.write_text(f"object_id,label,tags\n{BIG_ID + 6},normal,smooth\n7,interesting,\n")
    result = runner.invoke(main, ["labels", "import", str(results), str(colleague)])
    assert result.exit_code == 0, result.output
    assert "imported 2 rows" in result.output and "1 of them are objects not in" in result.output
    with LabelStore(results / "labels.sqlite") as store:  # the default label file
        assert (
            store.get(BIG_ID + 6)["tags"] == ["smooth"] and store.get(7)["label"] == "interesting"
        )
    result = runner.invoke(
        main,
        [
            "labels",
            "import",
            str(results),
            str(tmp_path / "labels.fits"),
            "--labels",
            str(tmp_path / "copy.sqlite"),
        ],
    )
    assert result.exit_code == 0 and "imported 2 rows" in result.output
    with LabelStore(tmp_path / "copy.sqlite") as store:
        assert store.get(BIG_ID)["note"] == "two nuclei"
    bad = tmp_path / "bad.csv"
    bad.write_text("object_id,label\n5,spiral\n")
    result = runner.invoke(main, ["labels", "import", str(results), str(bad)])
    assert result.exit_code == 1 and "row 2: unknown label 'spiral'" in result.output


SIGINT_ON_ANOTHER_THREAD = """
import signal, sys, threading, time
from tfanomaly.explore import explorer_server
from tfanomaly.pipelines.config import ExploreConfig

server = explorer_server(sys.argv[1], ExploreConfig(port=0), sys.argv[2], echo=lambda *a: None)

def poke():
    server._ready.wait(60)
    time.sleep(0.5)
    # The C-level handler runs on this thread, as when the kernel picks a worker thread.
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

threading.Thread(target=poke, daemon=True).start()
try:
    server.serve_forever()
except KeyboardInterrupt:
    print("stopped by Ctrl-C")
"""


def test_ctrl_c_delivered_to_another_thread_stops_the_server(results, tmp_path):
    """Where SIGINT lands on a thread other than the main one (the kernel may pick any), the
    server still stops: the CI hang of an explorer idle in select() after Ctrl-C."""
    process = subprocess.run(
        [
            sys.executable,
            "-X",
            "faulthandler",
            "-c",
            SIGINT_ON_ANOTHER_THREAD,
            str(results),
            str(tmp_path / "labels.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    assert "stopped by Ctrl-C" in process.stdout
