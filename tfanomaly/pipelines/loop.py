"""The one mechanism of every long, resumable stage: a ledger of the job's options and finished
units (ingest's shards, score's parts, a run's stages), and the checkpointed Keras training loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfanomaly.errors import ConfigError, TfanomalyError
from tfanomaly.fileio import atomic_path, write_json_atomic
from tfanomaly.results.preview import save_png

# Options of every stage that may change between a run and its resumption.
FREE_OPTIONS = ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "check")
# Options added after runs were recorded: left out of the job while at their config's default, so
# that a run trained before the option existed still resumes.
LATER_OPTIONS = ("augment", "contrastive")
# Run folders of tfanomaly 0.1 recorded a stage's job under this name.
LEGACY_JOB = "architecture"


def entry_job(entry: dict) -> dict | None:
    """The job of a ledger entry (also of one written by tfanomaly 0.1)."""
    return entry.get("job", entry.get(LEGACY_JOB))


class Ledger:
    """What a resumable job has finished, kept in one JSON file beside its output and rewritten
    atomically after every finished unit, so that a kill at any moment loses at most the unit in
    progress.

    An entry holds the job (the options and inputs its units depend on) and the units (dicts with
    at least ``file``, a name relative to the ledger's folder). Rerunning the same job resumes with
    the units whose files still exist; a job with other options either starts over (``restart``:
    the caller clears the old units) or is refused (``refuse``: a training run must not continue
    with another architecture). ``section`` keeps several jobs in one file (a run folder's
    ``run.json`` holds one entry per trained stage beside the run's own fields).

    Example (a job of shards, killed after the first and run again):
        >>> out = Path(tempfile.mkdtemp())
        >>> job = {"source": "survey.h5", "shard_size": 1024}
        >>> ledger = Ledger(out / ".ingest-state.json", job)
        >>> ledger.resume("restart")
        []
        >>> _ = (out / "cutouts-00000.tfrecord").write_bytes(b"...")  # the shard is written
        >>> ledger.add({"file": "cutouts-00000.tfrecord", "count": 1024})
        >>> Ledger(out / ".ingest-state.json", job).resume("restart")  # after a kill
        [{'file': 'cutouts-00000.tfrecord', 'count': 1024}]
        >>> Ledger(out / ".ingest-state.json", {**job, "shard_size": 512}).resume("restart")
        []
        >>> ledger.close()  # the job is complete: the record goes
    """

    def __init__(self, path, job: dict, *, section: str | None = None):
        self.path, self.job, self.section = Path(path), job, section
        self.units: list[dict] = []

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{self.path}: damaged job record ({exc}); remove it to start over"
            ) from exc

    def _entry(self, data: dict) -> dict | None:
        entry = data.get(self.section) if self.section else (data or None)
        if entry is not None and "job" not in entry:
            entry = {**entry, "job": entry_job(entry)}
        return entry

    def saved_job(self) -> dict | None:
        """The job of the record on disk, if any."""
        entry = self._entry(self._read())
        return None if entry is None else entry.get("job")

    def resume(
        self,
        on_change: str,
        *,
        clear: Callable[[], None] | None = None,
        refusal: Callable[[list[str]], str] | None = None,
        extra: dict | None = None,
        fields: dict | None = None,
    ) -> list[dict]:
        """Start or continue the job; return the units already finished.

        Args:
            on_change: ``restart`` (forget an earlier job with other options, after ``clear()``)
                or ``refuse`` (raise ConfigError with ``refusal(changed option names)``).
            clear: removes an earlier job's leftovers before a fresh start.
            extra: top-level fields written beside the entry (with ``section``).
            fields: fields of the entry beside the job (a training stage's step target).
        """
        data = self._read()
        entry = self._entry(data)
        if entry is not None and entry.get("job") == self.job:
            folder = self.path.parent
            self.units = [u for u in entry.get("units", []) if (folder / u["file"]).exists()]
        else:
            if entry is not None and on_change == "refuse":
                old = entry.get("job") or {}
                changed = [k for k, v in self.job.items() if old.get(k) != v]
                raise ConfigError(refusal(changed) if refusal else f"{self.path}: other options")
            if clear is not None:
                clear()
            self.units = []
        self._write(data, extra, fields)
        return list(self.units)

    def add(self, unit: dict) -> None:
        """Record one more finished unit (its file already in place)."""
        self.units.append(unit)
        self._write(self._read())

    def close(self) -> None:
        """The job is complete and its output written: drop the record (a file of its own)."""
        if self.section is None:
            self.path.unlink(missing_ok=True)

    def _write(self, data: dict, extra: dict | None = None, entry_fields: dict | None = None):
        old = self._entry(data) or {}
        entry = {k: v for k, v in old.items() if k not in ("job", "units", LEGACY_JOB)}
        entry.update(entry_fields or {})
        entry = {"job": self.job, **entry}
        if self.units or not self.section:  # a run's stages keep their units as TF checkpoints
            entry["units"] = self.units
        if self.section:
            data = {**data, **(extra or {}), self.section: entry}
        else:
            data = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, data)


def stage_options(config) -> dict:
    """The options of a training stage's config that must stay the same when it is resumed, as
    JSON gives them back (tuples as lists)."""

    def as_json(value):
        return json.loads(json.dumps(value))

    defaults = {
        f.name: as_json(f.default) for f in dataclasses.fields(config) if f.name in LATER_OPTIONS
    }
    options = as_json(dataclasses.asdict(config))
    return {
        k: v
        for k, v in options.items()
        if k not in FREE_OPTIONS and not (k in defaults and v == defaults[k])
    }


class TrainingDivergedError(TfanomalyError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def distribution_strategy(devices: list[str] | None = None):
    """MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster, MirroredStrategy over
    ``devices`` or over all GPUs when there are several, else the default (one device)."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices:
        return tf.distribute.MirroredStrategy(devices)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    """Whether this process writes the run folder: every strategy's one process, and under
    MultiWorkerMirroredStrategy only the chief (TF_CONFIG's ``chief``, else worker 0)."""
    return strategy.extended.should_checkpoint


def _multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.extended._in_multi_worker_mode()
    )


@contextlib.contextmanager
def worker_folder(run_dir, strategy, copy: tuple[str, ...] = ()) -> Iterator[Path]:
    """The folder this worker writes a stage's output to: the run folder on the chief; on every
    other worker of a cluster a temporary folder, removed afterwards (also after an error).

    The other workers still save checkpoints and networks (a save may read synchronised
    variables, a collective every worker must join), but into a folder nobody reads, so that
    one writer owns the run folder (the Keras/TF multi-worker pattern). ``copy`` names run-folder
    files the temporary folder starts with (run.json, so that its checks see the run's record).
    """
    run_dir = Path(run_dir)
    if is_chief(strategy):
        yield run_dir
        return
    # Named by task and run folder, so that a restart clears what a killed worker left behind.
    task = strategy.cluster_resolver
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"tfanomaly-{task.task_type}{task.task_id}-{digest}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        for name in copy:
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, folder / name)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class WorkerLostError(TfanomalyError):
    """Another worker of a multi-worker cluster stopped answering (killed, preempted, crashed)."""


def _vector_logs(model: keras.Model) -> None:
    """Give a step's logs a leading axis of one: Keras 3's fit averages them over the workers with
    strategy.reduce(MEAN, axis=0), which fails on scalars (tensorflow/tensorflow#72388)."""
    step = model.train_step

    def train_step(data):
        return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

    model.train_step = train_step


def _check_workers_agree(strategy, start: int, checkpoint_dir: Path) -> None:
    """Every worker must resume from the same step: one that found no checkpoint would wait
    forever on collectives the others have long passed (a run folder not shared by all)."""
    starts = strategy.gather(tf.constant([start], tf.int64), axis=0).numpy().tolist()
    if len(set(starts)) > 1:
        raise ConfigError(
            f"the workers found different checkpoints in {checkpoint_dir} (steps {starts}): "
            "every worker must see the same run folder, on a file system they all share"
        )


@contextlib.contextmanager
def precision(policy: str) -> Iterator[None]:
    """Run a block under a Keras mixed-precision policy, restoring the previous one after it."""
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@dataclass
class Stage:
    """One trainable stage of a run, as the generic loop sees it.

    Args:
        name: ``gan``, ``encoder``, ...: names the checkpoint folder, logs and messages.
        model: the keras.Model whose ``fit`` trains the stage.
        checkpoint: everything to save and restore (networks, optimizers, random state).
        step: the variable counting updates (an optimizer's ``iterations``).
        images_per_step: real images consumed per step, for the throughput figure.
        preview: step -> image grid in [0, 1], saved as PNG and to TensorBoard at checkpoints.
    """

    name: str
    model: keras.Model
    checkpoint: tf.train.Checkpoint
    step: tf.Variable
    images_per_step: int
    preview: Callable[[], np.ndarray]


class _Monitor(keras.callbacks.Callback):
    """Per step: NaN guard, progress bar, TensorBoard scalars; a checkpoint and a preview grid at
    every epoch end (one epoch = ``checkpoint_every`` steps); stop at the step target.

    ``previews``: off on the non-chief workers of a cluster, whose writer is a no-op too (the
    logs are the same on every worker: Keras averages them over the workers)."""

    def __init__(
        self,
        stage: Stage,
        manager,
        steps: int,
        log_every: int,
        run_dir,
        bar,
        writer,
        start: int,
        previews: bool = True,
    ):
        super().__init__()
        self.stage, self.manager, self.steps, self.log_every = stage, manager, steps, log_every
        self.run_dir, self.bar, self.writer, self.previews = run_dir, bar, writer, previews
        # Every worker decides alike whether to save (a save is collective): by the step, not by
        # what its own checkpoint folder holds.
        self.saved_step = start
        self.diverged_at: int | None = None
        self.logs: dict = {}

    def step(self) -> int:
        return int(self.stage.step.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self.step()
        logs = {k: float(np.reshape(v, ())) for k, v in (logs or {}).items()}
        if not all(math.isfinite(v) for v in logs.values()):
            self.diverged_at = step
            self.model.stop_training = True
            return
        self.logs = logs
        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
        if step % self.log_every == 0:
            with self.writer.as_default(step=step):
                for name, value in logs.items():
                    tf.summary.scalar(f"{self.stage.name}/{name}", value)
        if step >= self.steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is None:
            self.save()

    def save(self) -> None:
        step = self.step()
        if step == self.saved_step:
            return
        self.manager.save(checkpoint_number=step)
        self.saved_step = step
        if not self.previews:
            return
        grid = self.stage.preview()
        save_png(self.run_dir / "samples" / f"{self.stage.name}-step-{step:06d}.png", grid, scale=2)
        with self.writer.as_default(step=step):
            tf.summary.image(f"{self.stage.name}/preview", grid[None], max_outputs=1)


def run_stage(
    stage: Stage,
    make_dataset,
    run_dir: Path,
    config,
    progress: bool,
    echo,
    out_dir: Path | None = None,
) -> int:
    """Restore the stage's newest checkpoint and train it to ``config.steps``; return the step it
    started from. ``make_dataset(start_step)`` gives the training data (its shuffle seed moves with
    the step, so a resumed run does not replay the batches it has seen). Checkpoints every
    ``config.checkpoint_every`` steps, on Ctrl-C, and at the end.

    Checkpoints are read from ``run_dir``; checkpoints, logs, previews and the training summary
    are written to ``out_dir`` (default ``run_dir``; on a cluster's other workers the temporary
    folder of :func:`worker_folder`, and no previews or TensorBoard logs).
    """
    out_dir = Path(out_dir or run_dir)
    strategy = stage.model.distribute_strategy
    multi_worker, chief = _multi_worker(strategy), is_chief(strategy)
    checkpoints = run_dir / "checkpoints" / stage.name
    manager = tf.train.CheckpointManager(
        stage.checkpoint, out_dir / "checkpoints" / stage.name, config.keep_checkpoints
    )

    def newest() -> str | None:  # the run folder's, also on the workers that do not write it
        return tf.train.latest_checkpoint(str(checkpoints))

    latest = newest()
    if latest:
        stage.checkpoint.restore(latest).assert_existing_objects_matched()
    start = int(stage.step.numpy())
    if multi_worker:
        _check_workers_agree(strategy, start, checkpoints)
        _vector_logs(stage.model)
    if start:
        echo(f"resuming {run_dir} {stage.name} from step {start} ({latest})")
    if start >= config.steps:
        echo(f"{run_dir}: {stage.name} already trained for {start} steps (asked: {config.steps})")
        return start
    if chief:
        writer = tf.summary.create_file_writer(str(out_dir / "logs"))
    else:
        writer = tf.summary.create_noop_writer()
    started = time.perf_counter()
    with tqdm(
        total=config.steps,
        initial=start,
        unit="step",
        desc=f"train {stage.name}",
        disable=not progress,
    ) as bar:
        monitor = _Monitor(
            stage,
            manager,
            config.steps,
            config.log_every,
            out_dir,
            bar,
            writer,
            start,
            previews=chief,
        )
        try:
            # One fit call for the whole run (a call per checkpoint costs a pipeline restart);
            # epochs only mark checkpoints, the monitor stops at exactly config.steps.
            stage.model.fit(
                make_dataset(start),
                steps_per_epoch=config.checkpoint_every,
                epochs=math.ceil((config.steps - start) / config.checkpoint_every),
                verbose=0,
                shuffle=False,
                callbacks=[monitor],
            )
        except KeyboardInterrupt:
            if monitor.diverged_at is None and monitor.step() > start:
                monitor.save()
            raise
        except (
            tf.errors.UnavailableError,
            tf.errors.DeadlineExceededError,
            tf.errors.CancelledError,
        ) as exc:
            if not multi_worker:
                raise
            raise WorkerLostError(
                f"{stage.name}: another worker stopped answering at step {monitor.step()} "
                f"({type(exc).__name__}); start every worker again with the same command to "
                f"resume from the last checkpoint ({newest() or 'none'})"
            ) from exc
    if monitor.diverged_at is not None:
        raise TrainingDivergedError(
            f"{stage.name}: a loss became NaN/inf at step {monitor.diverged_at}; training stopped "
            f"and the last good checkpoint is kept ({newest() or 'none yet'}). "
            "Try a lower --learning-rate or float32 precision"
        )
    monitor.save()
    seconds = time.perf_counter() - started
    writer.flush()
    write_json_atomic(
        out_dir / f"training_{stage.name}.json",
        {
            "steps": monitor.step(),
            "losses_since_last_checkpoint": monitor.logs,
            "seconds_this_session": round(seconds, 2),
            "images_per_second": (monitor.step() - start) * stage.images_per_step / seconds,
        },
    )
    return start


def trackable(variables: list) -> tf.train.Checkpoint:
    """A list of variables (also distributed ones) as one checkpointable object."""
    return tf.train.Checkpoint(**{f"w{i}": v for i, v in enumerate(variables)})


def save_keras(model: keras.Model, path: Path) -> None:
    """Save a Keras model atomically (a kill never leaves half a .keras file)."""
    with atomic_path(path) as tmp:
        model.save(tmp)
