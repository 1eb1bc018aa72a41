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
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfanomaly.data.dataset import image_dataset, load_dataset
from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.errors import ConfigError, TfanomalyError
from tfanomaly.fileio import atomic_path, write_json_atomic
from tfanomaly.models.config import get_preset
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer
from tfanomaly.results.preview import save_png, tile

RUN_FILE = "run.json"
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


class TrainingDivergedError(TfanomalyError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# Options of every stage that may change between a run and its resumption.
FREE_OPTIONS = ("steps", "checkpoint_every", "keep_checkpoints", "log_every")


def check_steps(config) -> None:
    """Every stage config's counts (steps, batch size, checkpointing, logging) are at least 1."""
    for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name.replace('_', '-')} must be at least 1")


def architecture(config) -> dict:
    """The options of a stage config that must stay the same when a run is resumed."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in FREE_OPTIONS}


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
        ema_decay: 0 (off) or the decay of a moving average of the generator's weights; when on,
            ``generator.keras`` carries the average and ``generator_raw.keras`` the last weights.
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
    ema_decay: float = 0.0

    def validate(self) -> None:
        check_steps(self)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.n_critic < 1:
            raise ConfigError("n-critic must be at least 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Options of ``tfanomaly train encoder``.

    Args:
        steps: encoder updates in all.
        batch_size: images per update.
        learning_rate: Adam learning rate (beta1 0.5, beta2 0.9 as for the GAN).
        lam: weight of the critic-feature term in the loss (as in the inversion, paper 0.3).
        checkpoint_every, keep_checkpoints, log_every, seed: as for the GAN.
    """

    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    lam: float = 0.3
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0

    def validate(self) -> None:
        check_steps(self)
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"lambda must be in [0, 1], got {self.lam}")


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


def record_stage(run_dir: Path, stage: str, config, extra: dict | None = None) -> None:
    """Add a stage's options to run.json; on resume refuse options that would not continue it."""
    run_file = run_dir / RUN_FILE
    saved = json.loads(run_file.read_text()) if run_file.exists() else {}
    wanted = architecture(config)
    if stage in saved and saved[stage]["architecture"] != wanted:
        changed = [k for k, v in wanted.items() if saved[stage]["architecture"].get(k) != v]
        raise ConfigError(
            f"{run_dir}: its {stage} was trained with other options ({', '.join(changed)}); "
            "resume it with the same ones or use a new --out folder"
        )
    saved.update(extra or {})
    saved[stage] = {"architecture": wanted, "steps": config.steps}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, saved)


def _data_record(info: DatasetInfo) -> dict:
    return {
        "path": str(info.path.resolve()),
        "count": info.count,
        "shape": list(info.shape),
        "bands": list(info.bands),
    }


def load_run(run_dir) -> dict:
    """The run.json of a training run folder."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a tfanomaly run folder (no {RUN_FILE})")
    return json.loads(path.read_text())


def check_run_takes(run: dict, info: DatasetInfo) -> None:
    """Refuse a data set whose cutouts the run's models cannot take (size or band count)."""
    expected = (run["model"]["image_size"],) * 2 + (run["model"]["channels"],)
    if tuple(info.shape) != expected:
        raise ConfigError(
            f"{info.path} holds {info.shape} cutouts but the run's models take {expected}"
        )


def _set_precision(precision: str):
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    return previous


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
    every epoch end (one epoch = ``checkpoint_every`` steps); stop at the step target."""

    def __init__(self, stage: Stage, manager, steps: int, log_every: int, run_dir, bar, writer):
        super().__init__()
        self.stage, self.manager, self.steps, self.log_every = stage, manager, steps, log_every
        self.run_dir, self.bar, self.writer = run_dir, bar, writer
        self.diverged_at: int | None = None
        self.logs: dict = {}

    def step(self) -> int:
        return int(self.stage.step.numpy())

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
        if self.manager.latest_checkpoint and self.manager.latest_checkpoint.endswith(f"-{step}"):
            return
        self.manager.save(checkpoint_number=step)
        grid = self.stage.preview()
        save_png(self.run_dir / "samples" / f"{self.stage.name}-step-{step:06d}.png", grid, scale=2)
        with self.writer.as_default(step=step):
            tf.summary.image(f"{self.stage.name}/preview", grid[None], max_outputs=1)


def run_stage(stage: Stage, make_dataset, run_dir: Path, config, progress: bool, echo) -> int:
    """Restore the stage's newest checkpoint and train it to ``config.steps``; return the step it
    started from. ``make_dataset(start_step)`` gives the training data (its shuffle seed moves with
    the step, so a resumed run does not replay the batches it has seen). Checkpoints every
    ``config.checkpoint_every`` steps, on Ctrl-C, and at the end."""
    manager = tf.train.CheckpointManager(
        stage.checkpoint, run_dir / "checkpoints" / stage.name, config.keep_checkpoints
    )
    if manager.latest_checkpoint:
        stage.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    start = int(stage.step.numpy())
    if start:
        echo(f"resuming {run_dir} {stage.name} from step {start} ({manager.latest_checkpoint})")
    if start >= config.steps:
        echo(f"{run_dir}: {stage.name} already trained for {start} steps (asked: {config.steps})")
        return start
    writer = tf.summary.create_file_writer(str(run_dir / "logs"))
    started = time.perf_counter()
    with tqdm(total=config.steps, initial=start, unit="step", desc=f"train {stage.name}",
              disable=not progress) as bar:  # fmt: skip
        monitor = _Monitor(stage, manager, config.steps, config.log_every, run_dir, bar, writer)
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
    if monitor.diverged_at is not None:
        raise TrainingDivergedError(
            f"{stage.name}: a loss became NaN/inf at step {monitor.diverged_at}; training stopped "
            f"and the last good checkpoint is kept ({manager.latest_checkpoint or 'none yet'}). "
            "Try a lower --learning-rate or float32 precision"
        )
    monitor.save()
    seconds = time.perf_counter() - started
    writer.flush()
    write_json_atomic(
        run_dir / f"training_{stage.name}.json",
        {
            "steps": monitor.step(),
            "losses_since_last_checkpoint": monitor.logs,
            "seconds_this_session": round(seconds, 2),
            "images_per_second": (monitor.step() - start) * stage.images_per_step / seconds,
        },
    )
    return start


def _trackable(variables: list) -> tf.train.Checkpoint:
    """A list of variables (also distributed ones) as one checkpointable object."""
    return tf.train.Checkpoint(**{f"w{i}": v for i, v in enumerate(variables)})


def _training_data(data_dir, config, images_per_step: int, start_step: int):
    return image_dataset(
        data_dir,
        images_per_step,
        shuffle=True,
        seed=config.seed + start_step,
        repeat=True,
        drop_remainder=True,
    )


def save_keras(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def _check_size(info: DatasetInfo, model_config, data_dir, preset: str) -> None:
    if tuple(info.shape[:2]) != (model_config.image_size,) * 2:
        raise ConfigError(
            f"preset {preset} is for {model_config.image_size}x{model_config.image_size} "
            f"cutouts but {data_dir} holds {info.shape[0]}x{info.shape[1]}; choose a matching "
            "preset or simulate/ingest at that size"
        )


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
    _check_size(info, model_config, data_dir, config.preset)
    strategy = strategy or distribution_strategy()
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"batch size {config.batch_size} does not split over "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    extra = {"model": model_config.to_dict(), "data": _data_record(info)}
    record_stage(run_dir, "gan", config, extra)

    previous_policy = _set_precision(config.precision)
    try:
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            gan = WGANGP.from_preset(
                model_config,
                n_critic=config.n_critic,
                gp_weight=config.gp_weight,
                seed=config.seed,
                ema_decay=config.ema_decay,
            )
            optimizers = [paper_optimizer(config.learning_rate) for _ in range(2)]
            if config.precision == "mixed_float16":
                optimizers = [keras.optimizers.LossScaleOptimizer(o) for o in optimizers]
            gan.compile(d_optimizer=optimizers[0], g_optimizer=optimizers[1])
        fixed_z = tf.random.stateless_normal((64, gan.latent_dim), seed=(config.seed, 1))
        images_per_step = config.batch_size * config.n_critic
        stage = Stage(
            name="gan",
            model=gan,
            checkpoint=tf.train.Checkpoint(
                generator=gan.generator,
                critic=gan.critic,
                d_optimizer=gan.d_optimizer,
                g_optimizer=gan.g_optimizer,
                seed_generator=gan.seed_generator.state,
                **({"ema": _trackable(gan.ema_weights)} if gan.ema_weights else {}),
            ),
            step=gan.generator_steps,
            images_per_step=images_per_step,
            preview=lambda: tile(
                gan.averaged_generator()(fixed_z, training=False).numpy(), columns=8
            ),
        )
        _save_real_grid(data_dir, run_dir / "samples" / "real.png")
        start = run_stage(
            stage,
            lambda step: _training_data(data_dir, config, images_per_step, step),
            run_dir,
            config,
            progress,
            echo,
        )
        networks = {"generator": gan.averaged_generator(), "critic": gan.critic}
        if gan.ema_weights:
            networks["generator_raw"] = gan.generator
        for name, model in networks.items():
            save_keras(model, run_dir / f"{name}.keras")
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    steps = int(gan.generator_steps.numpy())
    return {
        "run": str(run_dir),
        "steps": steps,
        "resumed_from": start,
        "generator": str(run_dir / "generator.keras"),
        "critic": str(run_dir / "critic.keras"),
        "samples": str(run_dir / "samples" / f"gan-step-{steps:06d}.png"),
        "real": str(run_dir / "samples" / "real.png"),
        "preset": config.preset,
    }


def train_encoder(
    run_dir,
    config: EncoderTrainConfig,
    *,
    data_dir=None,
    strategy=None,
    progress: bool = True,
    echo: Callable = print,
) -> dict:
    """Train (or resume) the encoder of a run through its frozen generator and critic (izi_f).

    Uses the run's data set unless ``data_dir`` is given. Checkpoints in
    ``run_dir/checkpoints/encoder``; the result is ``run_dir/encoder.keras``, and the default
    score's calibration on the same data, ``run_dir/calibration.npz`` (see ``calibrate``).
    """
    from tfanomaly.models.config import ModelConfig
    from tfanomaly.models.encoder import EncoderTrainer, build_encoder

    config.validate()
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    for name in ("generator", "critic"):
        if not (run_dir / f"{name}.keras").exists():
            raise ConfigError(f"{run_dir}: no {name}.keras; run `tfanomaly train gan` first")
    data_dir = Path(data_dir or run["data"]["path"])
    info = DatasetInfo.from_folder(data_dir)
    model_config = ModelConfig.from_dict(run["model"])
    _check_size(info, model_config, data_dir, model_config.name)
    record_stage(run_dir, "encoder", config)
    strategy = strategy or distribution_strategy()
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        generator = keras.models.load_model(run_dir / "generator.keras", compile=False)
        critic = keras.models.load_model(run_dir / "critic.keras", compile=False)
        trainer = EncoderTrainer(build_encoder(model_config), generator, critic, lam=config.lam)
        trainer.compile(optimizer=paper_optimizer(config.learning_rate))
        trainer.optimizer.build(trainer.encoder.trainable_variables)
    preview_images = next(iter(load_dataset(data_dir, batch_size=32, shuffle=True, seed=2)))[
        "image"
    ]

    def preview():
        reconstructions = trainer(preview_images).numpy()
        pairs = np.stack([preview_images.numpy(), reconstructions], axis=1)  # real above recon.
        rows = [pairs[k : k + 8].transpose(1, 0, 2, 3, 4).reshape(-1, *pairs.shape[2:])
                for k in range(0, 32, 8)]  # fmt: skip
        return tile(np.concatenate(rows), columns=8)

    stage = Stage(
        name="encoder",
        model=trainer,
        checkpoint=tf.train.Checkpoint(encoder=trainer.encoder, optimizer=trainer.optimizer),
        step=trainer.optimizer.iterations,
        images_per_step=config.batch_size,
        preview=preview,
    )
    start = run_stage(
        stage,
        lambda step: _training_data(data_dir, config, config.batch_size, step),
        run_dir,
        config,
        progress,
        echo,
    )
    save_keras(trainer.encoder, run_dir / "encoder.keras")
    steps = int(trainer.optimizer.iterations.numpy())
    # The default score needs the run's noise and feature statistics: fit them now (seconds).
    from tfanomaly.pipelines.calibrate import calibrate

    calibrated = calibrate(run_dir, data_dir, seed=config.seed, progress=progress, echo=echo)
    return {
        "run": str(run_dir),
        "steps": steps,
        "resumed_from": start,
        "encoder": str(run_dir / "encoder.keras"),
        "reconstructions": str(run_dir / "samples" / f"encoder-step-{steps:06d}.png"),
        "calibration": str(calibrated["path"]),
    }


def _save_real_grid(data_dir, path: Path) -> None:
    if path.exists():
        return
    batch = next(iter(load_dataset(data_dir, batch_size=64, shuffle=True, seed=1)))
    save_png(path, tile(batch["image"].numpy(), columns=8), scale=2)
