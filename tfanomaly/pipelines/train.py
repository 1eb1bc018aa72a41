"""Training runs: a run folder with its config, checkpoints (resumable after a kill), TensorBoard
logs and sample grids, around the Keras models of :mod:`tfanomaly.models`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf
from tqdm.auto import tqdm

from tfanomaly.errors import ConfigError, TfanomalyError
from tfanomaly.fileio import atomic_path, write_json_atomic
from tfanomaly.models.config import get_preset
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer
from tfanomaly.pipelines.dataset import DatasetInfo, image_dataset, load_dataset
from tfanomaly.pipelines.preview import save_png, tile

RUN_FILE = "run.json"
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


class TrainingDivergedError(TfanomalyError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class GanTrainConfig:
    """Options of ``tfanomaly train gan`` (paper values where the paper gives them).

    Args:
        preset: model preset (``hsc96``, ``cpu32``, ``cpu48``); its image size must match the data.
        steps: generator iterations in all (the paper: 10,000).
        batch_size: images per critic step (the paper: 32).
        n_critic: critic updates per generator update, each on its own real batch.
        gp_weight: gradient-penalty weight.
        learning_rate: Adam learning rate of both networks (beta1 0.5, beta2 0.9).
        checkpoint_every: generator steps between checkpoints (and sample grids).
        keep_checkpoints: checkpoints kept on disk.
        log_every: generator steps between TensorBoard scalar writes.
        seed: seeds z, the penalty's interpolation and the data shuffle.
        precision: ``float32`` or a Keras mixed-precision policy.
    """

    preset: str = "cpu32"
    steps: int = 2000
    batch_size: int = 32
    n_critic: int = 5
    gp_weight: float = 10.0
    learning_rate: float = 1e-4
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0
    precision: str = "float32"

    def validate(self) -> None:
        for name in ("steps", "batch_size", "n_critic", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")

    def architecture(self) -> dict:
        """The options that must stay the same when a run is resumed."""
        values = dataclasses.asdict(self)
        for free in ("steps", "checkpoint_every", "keep_checkpoints", "log_every"):
            values.pop(free)
        return values


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


def _prepare_run(run_dir: Path, config: GanTrainConfig, info: DatasetInfo, model_config) -> None:
    """Write run.json for a new run; for an existing one, refuse options that would not resume."""
    run_file = run_dir / RUN_FILE
    if run_file.exists():
        saved = json.loads(run_file.read_text())
        if saved["gan"]["architecture"] != config.architecture():
            changed = [
                k
                for k, v in config.architecture().items()
                if saved["gan"]["architecture"].get(k) != v
            ]
            raise ConfigError(
                f"{run_dir}: this run was started with other options ({', '.join(changed)}); "
                "resume it with the same ones or use a new --out folder"
            )
        saved["gan"]["steps"] = config.steps
        write_json_atomic(run_file, saved)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        run_file,
        {
            "model": model_config.to_dict(),
            "gan": {"architecture": config.architecture(), "steps": config.steps},
            "data": {
                "path": str(info.path.resolve()),
                "count": info.count,
                "shape": list(info.shape),
                "bands": list(info.bands),
            },
        },
    )


def load_run(run_dir) -> dict:
    """The run.json of a training run folder."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a tfanomaly run folder (no {RUN_FILE})")
    return json.loads(path.read_text())


def _set_precision(precision: str):
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    return previous


class _Monitor(keras.callbacks.Callback):
    """Per generator step: NaN guard, progress bar, TensorBoard scalars; a checkpoint and a sample
    grid at every epoch end (one epoch = ``checkpoint_every`` steps); stop at the step target."""

    def __init__(self, gan, manager, config: GanTrainConfig, run_dir: Path, bar, writer):
        super().__init__()
        self.gan, self.manager, self.config, self.run_dir = gan, manager, config, run_dir
        self.bar, self.writer = bar, writer
        self.fixed_z = tf.random.stateless_normal((64, gan.latent_dim), seed=(config.seed, 1))
        self.diverged_at: int | None = None
        self.logs: dict = {}

    def step(self) -> int:
        return int(self.gan.generator_steps.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self.step()
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if not all(math.isfinite(v) for v in logs.values()):
            self.diverged_at = step
            self.model.stop_training = True
            return
        self.logs = logs
        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
        if step % self.config.log_every == 0:
            with self.writer.as_default(step=step):
                for name, value in logs.items():
                    tf.summary.scalar(f"gan/{name}", value)
        if step >= self.config.steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is None:
            self.save()

    def save(self) -> None:
        step = self.step()
        if self.manager.latest_checkpoint and self.manager.latest_checkpoint.endswith(f"-{step}"):
            return
        self.manager.save(checkpoint_number=step)
        samples = self.gan.generator(self.fixed_z, training=False).numpy()
        grid = tile(samples, columns=8)
        save_png(self.run_dir / "samples" / f"step-{step:06d}.png", grid, scale=2)
        with self.writer.as_default(step=step):
            tf.summary.image("gan/samples", grid[None], max_outputs=1)


def train_gan(
    data_dir,
    run_dir,
    config: GanTrainConfig,
    *,
    strategy=None,
    progress: bool = True,
    echo: Callable = print,
) -> dict:
    """Train (or resume) a WGAN-GP on an ingested data set; return a summary.

    Checkpoints (networks, both optimizers, the step count and the random state) go to
    ``run_dir/checkpoints/gan`` every ``checkpoint_every`` generator steps; rerunning the same call
    after a crash or kill resumes from the newest one. At the end the generator and critic are
    saved in Keras format (``generator.keras``, ``critic.keras``).
    """
    config.validate()
    run_dir = Path(run_dir)
    info = DatasetInfo.from_folder(data_dir)
    model_config = get_preset(config.preset, channels=info.shape[2])
    if tuple(info.shape[:2]) != (model_config.image_size,) * 2:
        raise ConfigError(
            f"preset {config.preset} is for {model_config.image_size}x{model_config.image_size} "
            f"cutouts but {data_dir} holds {info.shape[0]}x{info.shape[1]}; choose a matching "
            "preset or simulate/ingest at that size"
        )
    strategy = strategy or distribution_strategy()
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"batch size {config.batch_size} does not split over "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    _prepare_run(run_dir, config, info, model_config)

    previous_policy = _set_precision(config.precision)
    try:
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            gan = WGANGP.from_preset(
                model_config, n_critic=config.n_critic, gp_weight=config.gp_weight, seed=config.seed
            )
            optimizers = [paper_optimizer(config.learning_rate) for _ in range(2)]
            if config.precision == "mixed_float16":
                optimizers = [keras.optimizers.LossScaleOptimizer(o) for o in optimizers]
            gan.compile(d_optimizer=optimizers[0], g_optimizer=optimizers[1])
        checkpoint = tf.train.Checkpoint(
            generator=gan.generator,
            critic=gan.critic,
            d_optimizer=gan.d_optimizer,
            g_optimizer=gan.g_optimizer,
            seed_generator=gan.seed_generator.state,
        )
        manager = tf.train.CheckpointManager(
            checkpoint, run_dir / "checkpoints" / "gan", max_to_keep=config.keep_checkpoints
        )
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        start = int(gan.generator_steps.numpy())
        if start:
            echo(f"resuming {run_dir} from generator step {start} ({manager.latest_checkpoint})")
        if start >= config.steps:
            echo(f"{run_dir}: already trained for {start} steps (asked for {config.steps})")
        else:
            _train_loop(gan, manager, data_dir, run_dir, config, start, progress)
        return _finish_gan(gan, run_dir, config, start)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train_loop(gan, manager, data_dir, run_dir, config, start, progress) -> None:
    dataset = image_dataset(
        data_dir,
        config.batch_size * config.n_critic,
        shuffle=True,
        seed=config.seed + start,  # a resumed run does not replay the batches it has seen
        repeat=True,
        drop_remainder=True,
    )
    writer = tf.summary.create_file_writer(str(run_dir / "logs"))
    _save_real_grid(data_dir, run_dir / "samples" / "real.png")
    started = time.perf_counter()
    with tqdm(
        total=config.steps, initial=start, unit="step", desc="train gan", disable=not progress
    ) as bar:
        monitor = _Monitor(gan, manager, config, run_dir, bar, writer)
        try:
            # One fit call for the whole run (a call per checkpoint costs a pipeline restart);
            # epochs only mark checkpoints, the monitor stops at exactly config.steps.
            gan.fit(
                dataset,
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
    if monitor.diverged_at is not None:
        raise TrainingDivergedError(
            f"a loss became NaN/inf at generator step {monitor.diverged_at}; training stopped "
            f"and the last good checkpoint is kept ({manager.latest_checkpoint or 'none yet'}). "
            "Try a lower --learning-rate or float32 precision"
        )
    monitor.save()
    seconds = time.perf_counter() - started
    steps = monitor.step() - start
    writer.flush()
    write_json_atomic(
        run_dir / "training_gan.json",
        {
            "steps": monitor.step(),
            "losses_since_last_checkpoint": monitor.logs,
            "seconds_this_session": round(seconds, 2),
            "critic_images_per_second": steps * config.batch_size * config.n_critic / seconds,
        },
    )


def _save_real_grid(data_dir, path: Path) -> None:
    if path.exists():
        return
    batch = next(iter(load_dataset(data_dir, batch_size=64, shuffle=True, seed=1)))
    save_png(path, tile(batch["image"].numpy(), columns=8), scale=2)


def _finish_gan(gan, run_dir: Path, config: GanTrainConfig, start: int) -> dict:
    for name, model in (("generator", gan.generator), ("critic", gan.critic)):
        with atomic_path(run_dir / f"{name}.keras") as tmp:
            model.save(tmp)
    steps = int(gan.generator_steps.numpy())
    return {
        "run": str(run_dir),
        "steps": steps,
        "resumed_from": start,
        "generator": str(run_dir / "generator.keras"),
        "critic": str(run_dir / "critic.keras"),
        "samples": str(run_dir / "samples" / f"step-{steps:06d}.png"),
        "real": str(run_dir / "samples" / "real.png"),
        "preset": config.preset,
    }
