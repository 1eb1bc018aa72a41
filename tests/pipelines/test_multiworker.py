"""`train gan` on a two-worker cluster (two processes on 127.0.0.1, each with its own TF_CONFIG,
under MultiWorkerMirroredStrategy): the workers stay in step, only the chief writes the run
folder, and a killed worker plus a restart of both resumes from the last checkpoint."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tfanomaly.pipelines.config import GanTrainConfig, IngestConfig
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.run import load_network
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.pipelines.train import train_gan as run_train_gan
from tfanomaly.simulate.config import SurveyConfig

pytestmark = pytest.mark.slow
# Seconds a cluster may take to train a few steps (~20 s on 2 idle cores, several times that on
# busy ones) before the test counts it as hung.
TIMEOUT = 420

# A worker: the real CLI (`tfanomaly train gan ...`, in-process so that it can be watched), with
# an audit hook listing the Python-level writes under the run folder (JSON, PNG, .keras files,
# folders; TF's own C++ writers are checked from outside, by file names) and save_keras wrapped
# to keep a copy of every network's weights where the test reads them.
WORKER = r"""
import json, os, sys

run_dir, report = os.path.abspath(sys.argv[1]), sys.argv[2]
seen = {"writes": [], "removed": [], "saved": []}
EVENTS = {"os.rename": 1, "os.mkdir": 0, "os.remove": 0, "os.rmdir": 0, "shutil.copyfile": 1}


def in_run(path):
    return isinstance(path, str) and os.path.abspath(path).startswith(run_dir + os.sep)


def audit(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (not set(mode) <= set("rbt")) if isinstance(mode, str) else bool(
            (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        path = os.fspath(path) if isinstance(path, os.PathLike) else path
        if writing and in_run(path):
            seen["writes"].append(path)
    elif event in EVENTS:
        path = args[EVENTS[event]]
        path = os.fspath(path) if isinstance(path, os.PathLike) else path
        if in_run(path):
            seen["writes"].append(path)
    elif event == "shutil.rmtree":
        seen["removed"].append(os.fspath(args[0]))


sys.addaudithook(audit)

import numpy as np
import tfanomaly.pipelines.train as train
from tfanomaly.cli import main

save = train.save_keras


def save_keras(model, path):
    name = os.path.basename(os.fspath(path)).removesuffix(".keras")
    np.savez(f"{report}.{name}.npz", *model.get_weights())
    seen["saved"].append(os.fspath(path))
    save(model, path)


train.save_keras = save_keras
try:
    main(sys.argv[3:])
finally:
    with open(report, "w") as handle:
        json.dump(seen, handle)
"""


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """64 simulated 16-px cutouts in 4 shards (2 per worker under file sharding)."""
    folder = tmp_path_factory.mktemp("survey")
    simulate_survey(folder / "s.h5", SurveyConfig(n_objects=64, size=16, seed=1), progress=False)
    ingest(folder / "s.h5", folder / "ds", IngestConfig(shard_size=16), progress=False)
    return folder / "ds"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def train_gan(data, run, steps: int) -> list[str]:
    return [
        "train",
        "gan",
        str(data),
        "--out",
        str(run),
        "--preset",
        "tiny16",
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--checkpoint-every",
        "2",
        "--no-check",
        "--quiet",
    ]


class Cluster:
    """Two workers of one `tfanomaly` command (``args``) on the run folder ``run``; worker i logs
    to work/worker<i>.log, reports to work/worker<i>.json and has its own temporary folder
    work/tmp<i>. ``other_args``: worker 1's command, when it differs."""

    def __init__(self, work, run, args: list[str], other_args: list[str] | None = None):
        self.work, self.run = work, run
        commands = [args, other_args or args]
        addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
        self.processes = []
        for index in range(2):
            (work / f"tmp{index}").mkdir(parents=True, exist_ok=True)
            task = {"type": "worker", "index": index}
            env = {
                **os.environ,
                "TF_CONFIG": json.dumps({"cluster": {"worker": addresses}, "task": task}),
                "TMPDIR": str(work / f"tmp{index}"),
                # Two cores shared with other jobs: one thread per worker.
                "TF_NUM_INTRAOP_THREADS": "1",
                "TF_NUM_INTEROP_THREADS": "1",
                "OMP_NUM_THREADS": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            with open(work / f"worker{index}.log", "w") as log:
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            WORKER,
                            str(run),
                            str(work / f"worker{index}.json"),
                            *commands[index],
                        ],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )

    def log(self, index: int) -> str:
        return (self.work / f"worker{index}.log").read_text()

    def report(self, index: int) -> dict:
        return json.loads((self.work / f"worker{index}.json").read_text())

    def weights(self, index: int, name: str) -> list[np.ndarray]:
        with np.load(self.work / f"worker{index}.json.{name}.npz") as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def wait(self, timeout: float, only: tuple[int, ...] = (0, 1)) -> list[int]:
        """The workers' exit codes; a worker still running after ``timeout`` seconds (a hung
        collective) fails the test, after every worker is killed."""
        deadline = time.monotonic() + timeout
        try:
            return [self.processes[i].wait(max(1.0, deadline - time.monotonic())) for i in only]
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"workers still running after {timeout} s:\n{self.log(0)[-3000:]}\n"
                f"{self.log(1)[-3000:]}"
            )

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def newest_step(run) -> int:
    # The manager's state file names a checkpoint only once it is complete.
    latest = tf.train.latest_checkpoint(run / "checkpoints" / "gan")
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def assert_same_weights(cluster: Cluster, names=("generator", "critic")) -> None:
    for name in names:
        chief, other = cluster.weights(0, name), cluster.weights(1, name)
        assert len(chief) == len(other) > 0
        for a, b in zip(chief, other, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)  # bit for bit: all-reduced updates
        saved = load_network(cluster.run, name).get_weights()
        for a, b in zip(saved, other, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}.keras")


def assert_only_the_chief_wrote(cluster: Cluster) -> None:
    chief, other = cluster.report(0), cluster.report(1)
    assert any(path.endswith("run.json") for path in chief["writes"])  # the hook sees writes
    assert chief["saved"] and all(path.startswith(str(cluster.run)) for path in chief["saved"])
    assert other["writes"] == []
    # The other worker saved its checkpoints and networks into its own temporary folder, then
    # removed it.
    other_tmp = cluster.work / "tmp1"
    assert other["saved"] and all(path.startswith(str(other_tmp)) for path in other["saved"])
    assert any(path.startswith(str(other_tmp)) for path in other["removed"])
    assert list(other_tmp.glob("tfanomaly-*")) == []


def test_two_workers_train_in_step_and_only_the_chief_writes_the_run(tiny_data, tmp_path):
    run = tmp_path / "run"
    cluster = Cluster(tmp_path / "work", run, train_gan(tiny_data, run, steps=4))
    codes = cluster.wait(timeout=TIMEOUT)
    assert codes == [0, 0], f"{cluster.log(0)[-3000:]}\n{cluster.log(1)[-3000:]}"
    for index in range(2):
        assert "trained 4 generator steps" in cluster.log(index)
    assert newest_step(run) == 4
    assert_same_weights(cluster)
    assert_only_the_chief_wrote(cluster)
    # TF's own writers: one TensorBoard file, the chief's (its name carries the writer's pid),
    # and nothing in the run folder but what a one-process run writes.
    events = [path.name for path in (run / "logs").iterdir()]
    assert len(events) == 1 and f".{cluster.processes[0].pid}." in events[0]
    assert sorted(str(path.relative_to(run)) for path in run.rglob("*")) == [
        "checkpoints",
        "checkpoints/gan",
        "checkpoints/gan/checkpoint",
        "checkpoints/gan/ckpt-2.data-00000-of-00001",
        "checkpoints/gan/ckpt-2.index",
        "checkpoints/gan/ckpt-4.data-00000-of-00001",
        "checkpoints/gan/ckpt-4.index",
        "critic.keras",
        "generator.keras",
        "logs",
        f"logs/{events[0]}",
        "run.json",
        "samples",
        "samples/gan-step-000002.png",
        "samples/gan-step-000004.png",
        "samples/real.png",
        "training_gan.json",
    ]

    # The encoder on the same cluster: the same rules, and the chief alone calibrates.
    before = {path for path in run.rglob("*") if path.is_file()}
    args = [
        "train",
        "encoder",
        str(run),
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "2",
        "--no-check",
        "--quiet",
    ]
    encoder = Cluster(tmp_path / "work", run, args)
    assert encoder.wait(timeout=TIMEOUT) == [0, 0], encoder.log(1)[-3000:]
    for index in range(2):
        assert "trained the encoder for 2 steps" in encoder.log(index)
    assert_same_weights(encoder, names=("encoder",))
    assert_only_the_chief_wrote(encoder)
    new_events = sorted({path.name for path in (run / "logs").iterdir()} - set(events))
    assert len(new_events) == 1 and f".{encoder.processes[0].pid}." in new_events[0]
    added = {path for path in run.rglob("*") if path.is_file()} - before
    assert sorted(str(path.relative_to(run)) for path in added) == [
        "calibration.npz",
        "checkpoints/encoder/checkpoint",
        "checkpoints/encoder/ckpt-2.data-00000-of-00001",
        "checkpoints/encoder/ckpt-2.index",
        "encoder.keras",
        f"logs/{new_events[0]}",
        "samples/encoder-step-000002.png",
        "training_encoder.json",
    ]


def test_a_killed_worker_and_a_restart_of_both_resume_from_the_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    cluster = Cluster(tmp_path / "work", run, train_gan(tiny_data, run, steps=100_000))
    deadline = time.monotonic() + TIMEOUT
    while newest_step(run) < 4 and time.monotonic() < deadline:
        if any(process.poll() is not None for process in cluster.processes):
            break
        time.sleep(0.2)
    os.kill(cluster.processes[1].pid, signal.SIGKILL)
    # The chief notices the lost worker (its collectives fail) and stops with a clear message,
    # instead of waiting forever.
    assert cluster.wait(timeout=120, only=(0,)) == [1], cluster.log(0)[-3000:]
    cluster.wait(timeout=10, only=(1,))
    assert "another worker stopped answering" in cluster.log(0)
    killed_at = newest_step(run)
    assert killed_at >= 4, "no checkpoint before the kill"
    assert f"resume from the last checkpoint ({run}/checkpoints/gan/ckpt-" in cluster.log(0)

    other_tmp = tmp_path / "work" / "tmp1"
    assert len(list(other_tmp.glob("tfanomaly-*"))) == 1  # what the killed worker left

    restarted = Cluster(tmp_path / "work", run, train_gan(tiny_data, run, killed_at + 4))
    codes = restarted.wait(timeout=TIMEOUT)
    assert codes == [0, 0], f"{restarted.log(0)[-3000:]}\n{restarted.log(1)[-3000:]}"
    for index in range(2):
        assert f"resuming {run} gan from step {killed_at}" in restarted.log(index)
        assert f"trained {killed_at + 4} generator steps" in restarted.log(index)
    assert newest_step(run) == killed_at + 4
    assert_same_weights(restarted)
    # The restarted worker cleared it before writing there, and removed its own at the end.
    assert list(other_tmp.glob("tfanomaly-*")) == []


def test_workers_that_see_different_checkpoints_stop_instead_of_hanging(tiny_data, tmp_path):
    # Worker 1 looks at another (empty) run folder, as on a file system the workers do not share:
    # it would start from step 0 while the chief resumes from step 2, and wait forever on
    # collectives the chief has passed.
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    config = GanTrainConfig(preset="tiny16", steps=2, batch_size=8, checkpoint_every=2, check=False)
    run_train_gan(tiny_data, run, config, progress=False, echo=lambda *_: None)
    cluster = Cluster(
        tmp_path / "work",
        run,
        train_gan(tiny_data, run, steps=4),
        other_args=train_gan(tiny_data, elsewhere, steps=4),
    )
    assert cluster.wait(timeout=TIMEOUT) == [1, 1]
    for index in range(2):
        assert "the workers found different checkpoints" in cluster.log(index)
        assert "steps [2, 0]" in cluster.log(index)
    assert newest_step(run) == 2
