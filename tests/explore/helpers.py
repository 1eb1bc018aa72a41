"""Talking to an explorer over HTTP in tests: requests, waiting for its state, starting the
command line as a server process and reading the URL it prints."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit


def call(
    url: str,
    path: str,
    body=None,
    *,
    method=None,
    content_type="application/json",
    raw: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 30,
):
    """(status, headers, decoded JSON or bytes) of one request; ``path`` is sent as it is, so
    that traversal attempts reach the server unnormalised."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"Content-Type": content_type} if data is not None else {}
    sent.update(headers or {})
    connection.request(method or ("POST" if data is not None else "GET"), path, data, sent)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    if response.getheader("Content-Type", "").startswith("application/json"):
        payload = json.loads(payload)
    return response.status, dict(response.getheaders()), payload


def get(url: str, path: str):
    status, _, payload = call(url, path)
    assert status == 200, (path, status, payload)
    return payload


def post(url: str, path: str, body: dict):
    status, _, payload = call(url, path, body)
    assert status == 200, (path, status, payload)
    return payload


def wait_for(url: str, condition, timeout: float = 60, what: str = "the explorer's state"):
    """Poll /api/state until ``condition(state)`` holds; return that state."""
    deadline = time.monotonic() + timeout
    while True:
        state = get(url, "/api/state")
        if condition(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {state}")
        time.sleep(0.05)


def start_explore(*args, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """``tfanomaly explore ARGS --port 0`` as a process; returns it with the URL it printed (the
    lines before the URL are in ``process.printed``)."""
    # -X faulthandler: stop_explore can ask a stuck process where each thread is (SIGABRT).
    command = [
        sys.executable,
        "-X",
        "faulthandler",
        "-m",
        "tfanomaly.cli",
        "explore",
        *map(str, args),
        "--port",
        "0",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"open (http://\S+) in a browser", line)
        if found:
            process.printed = lines
            return process, found[1]
    process.kill()
    raise AssertionError("tfanomaly explore did not print its URL:\n" + "".join(lines))


def interrupt_explore(process: subprocess.Popen, timeout: float = 180) -> str:
    """Ctrl-C (SIGINT) to an explorer started by :func:`start_explore`; its output once it has
    stopped. A process still running after ``timeout`` is made to print every thread's stack
    (faulthandler, SIGABRT), and the test fails with it."""
    process.send_signal(signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, _ = process.communicate(timeout=30)
        raise AssertionError(
            f"the explorer did not stop {timeout:g} s after SIGINT:\n{out}"
        ) from None
    return out


def add_clusters(folder, sizes=(12, 9, 7), noise: int = 4, seed: int = 0, embedding=None):
    """Give a results folder what ``tfanomaly embed`` leaves: UMAP positions and HDBSCAN clusters
    (``sizes`` members around centres 10 apart, ``noise`` objects in no cluster, the rest not
    embedded), as the catalog's umap_x, umap_y, cluster columns, or as an embedding.h5 at
    ``embedding``. Nothing is trained; returns {cluster: [object ids]} (-1: noise)."""
    import h5py
    import numpy as np

    from tfanomaly.results.catalog import catalog_table, json_attr, read_results, write_catalog

    columns, attrs = read_results(folder)
    n = len(columns["object_ids"])
    rng = np.random.default_rng(seed)
    rows = rng.permutation(n)[: sum(sizes) + noise]
    cluster = np.repeat(np.arange(len(sizes)), sizes).tolist() + [-1] * noise
    cluster = np.array(cluster, dtype=np.int64)
    x = np.where(cluster >= 0, 10.0 * cluster, 40.0) + rng.normal(0, 1, len(rows))
    y = np.where(cluster >= 0, 0.0, 10.0) + rng.normal(0, 1, len(rows))
    if embedding is not None:
        with h5py.File(embedding, "w") as f:
            f["latents"] = rng.normal(size=(len(rows), 4)).astype(np.float32)
            f["idxs"], f["object_ids"] = columns["idxs"][rows], columns["object_ids"][rows]
            f["umap_x"], f["umap_y"], f["cluster"] = x, y, cluster
    else:
        full = {
            "umap_x": np.full(n, np.nan),
            "umap_y": np.full(n, np.nan),
            "cluster": np.full(n, -1, dtype=np.int64),
        }
        full["umap_x"][rows], full["umap_y"][rows], full["cluster"][rows] = x, y, cluster
        table = catalog_table({**columns, **full}, json_attr(attrs.get("kind_names")))
        write_catalog(table, folder / "catalog.fits")
    ids = columns["object_ids"][rows]
    return {int(c): [int(i) for i in ids[cluster == c]] for c in np.unique(cluster)}
