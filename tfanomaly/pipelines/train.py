"""The training stages of a run: the WGAN-GP (``train gan``) and the encoder (``train encoder``),
each a resumable Stage of :mod:`tfanomaly.pipelines.loop` writing into the run folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfanomaly._tf import bf16_warning
from tfanomaly.data.dataset import image_dataset, load_dataset
from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.errors import ConfigError
from tfanomaly.models.config import ModelConfig, preset_for_data
from tfanomaly.models.encoder import Encoder, EncoderTrainer
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer
from tfanomaly.pipelines.calibrate import calibrate
from tfanomaly.pipelines.config import CalibrateConfig, EncoderTrainConfig, GanTrainConfig
from tfanomaly.pipelines.learning import check_samples
from tfanomaly.pipelines.loop import (
    Stage,
    distribution_strategy,
    is_chief,
    precision,
    run_stage,
    save_keras,
    trackable,
    worker_folder,
)
from tfanomaly.pipelines.run import (
    CALIBRATION_FILE,
    RUN_FILE,
    check_run_takes,
    data_record,
    load_network,
    load_run,
    network_path,
    record_stage,
    require_networks,
)
from tfanomaly.results.preview import save_png, tile


def _training_data(data_dir, config, images_per_step: int, start_step: int):
    return image_dataset(
        data_dir,
        images_per_step,
        shuffle=True,
        seed=config.seed + start_step,
        repeat=True,
        drop_remainder=True,
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

    Under MultiWorkerMirroredStrategy every worker runs this call on the same (shared) run folder:
    all restore its checkpoints, only the chief writes it (see ``loop.worker_folder``).
    """
    config.validate()
    run_dir = Path(run_dir)
    info = DatasetInfo.from_folder(data_dir)
    model_config = preset_for_data(config.preset, info.shape, source=data_dir)
    # The job names the architecture (auto and a family resolved: cpu32, tiny64), so that a run
    # resumes under any --preset that names the same network, and old runs' "cpu32" still match.
    config = dataclasses.replace(config, preset=model_config.name)
    strategy = strategy or distribution_strategy()
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"batch size {config.batch_size} does not split over "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    extra = {"model": model_config.to_dict(), "data": data_record(info)}
    with worker_folder(run_dir, strategy, copy=(RUN_FILE,)) as out_dir:
        record_stage(out_dir, "gan", config, extra)
        if warning := bf16_warning(config.precision):
            echo(f"warning: {warning}")
        start, steps = _train_gan(
            data_dir, run_dir, out_dir, config, model_config, strategy, progress, echo
        )
    return {
        "run": str(run_dir),
        "steps": steps,
        "resumed_from": start,
        "generator": str(network_path(run_dir, "generator")),
        "critic": str(network_path(run_dir, "critic")),
        "samples": str(run_dir / "samples" / f"gan-step-{steps:06d}.png"),
        "real": str(run_dir / "samples" / "real.png"),
        "preset": config.preset,
    }


def _train_gan(
    data_dir,
    run_dir: Path,
    out_dir: Path,
    config: GanTrainConfig,
    model_config,
    strategy,
    progress: bool,
    echo,
) -> tuple[int, int]:
    with precision(config.precision):
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            gan = WGANGP.from_preset(
                model_config,
                n_critic=config.n_critic,
                gp_weight=config.gp_weight,
                seed=config.seed,
                ema_decay=config.ema_decay,
                augment=config.augment,
                contrastive=config.contrastive,
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
                **({"ema": trackable(gan.ema_weights)} if gan.ema_weights else {}),
                **({"projection": gan.projection} if gan.projection is not None else {}),
            ),
            step=gan.generator_steps,
            images_per_step=images_per_step,
            preview=lambda: tile(
                gan.averaged_generator()(fixed_z, training=False).numpy(), columns=8
            ),
        )
        _save_real_grid(data_dir, out_dir / "samples" / "real.png")
        start = run_stage(
            stage,
            lambda step: _training_data(data_dir, config, images_per_step, step),
            run_dir,
            config,
            progress,
            echo,
            out_dir=out_dir,
        )
        reals = next(iter(load_dataset(data_dir, batch_size=64, shuffle=True, seed=1)))["image"]
        check_samples(
            "train gan",
            gan.averaged_generator()(fixed_z, training=False).numpy(),
            reals.numpy(),
            advice="try another --seed, a lower --learning-rate or more --steps; the checkpoints "
            f"are kept in {run_dir / 'checkpoints' / 'gan'}, no network file was written",
            enforce=config.check,
        )
        networks = {"generator": gan.averaged_generator(), "critic": gan.critic}
        if gan.ema_weights:
            networks["generator_raw"] = gan.generator
        for name, model in networks.items():
            save_keras(model, network_path(out_dir, name))
    return start, int(gan.generator_steps.numpy())


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
    score's calibration on the same data, ``run_dir/calibration.npz`` (see ``calibrate``). On a
    cluster, as ``train_gan``: only the chief writes the run folder (and calibrates).
    """
    config.validate()
    run_dir = Path(run_dir)
    strategy = strategy or distribution_strategy()
    with worker_folder(run_dir, strategy, copy=(RUN_FILE,)) as out_dir:
        return _train_encoder(run_dir, out_dir, config, data_dir, strategy, progress, echo)


def _train_encoder(
    run_dir: Path,
    out_dir: Path,
    config: EncoderTrainConfig,
    data_dir,
    strategy,
    progress: bool,
    echo,
) -> dict:
    run = load_run(run_dir)
    require_networks(run_dir, "generator", "critic")
    data_dir = Path(data_dir or run["data"]["path"])
    info = DatasetInfo.from_folder(data_dir)
    model_config = ModelConfig.from_dict(run["model"])
    check_run_takes(run, info)  # size and band count, as score and calibrate check them
    record_stage(out_dir, "encoder", config)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        generator = load_network(run_dir, "generator")
        critic = load_network(run_dir, "critic")
        trainer = EncoderTrainer(Encoder(model_config), generator, critic, lam=config.lam)
        trainer.compile(optimizer=paper_optimizer(config.learning_rate))
        trainer.optimizer.build(trainer.encoder.trainable_variables)
    preview_images = next(iter(load_dataset(data_dir, batch_size=32, shuffle=True, seed=2)))[
        "image"
    ]

    def preview():
        reconstructions = trainer(preview_images).numpy()
        pairs = np.stack([preview_images.numpy(), reconstructions], axis=1)  # real above recon.
        rows = [
            pairs[k : k + 8].transpose(1, 0, 2, 3, 4).reshape(-1, *pairs.shape[2:])
            for k in range(0, 32, 8)
        ]
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
        out_dir=out_dir,
    )
    check_samples(
        "train encoder",
        trainer(preview_images).numpy(),
        preview_images.numpy(),
        what="reconstructions of different images",
        advice="try a lower --learning-rate or more --steps; the checkpoints are kept, no "
        "encoder file was written",
        enforce=config.check,
    )
    save_keras(trainer.encoder, network_path(out_dir, "encoder"))
    steps = int(trainer.optimizer.iterations.numpy())
    # The default score needs the run's noise and feature statistics: fit them now (seconds; no
    # collective in it, so the other workers of a cluster leave it to the chief).
    if is_chief(strategy):
        calibrate(
            run_dir, data_dir, CalibrateConfig(seed=config.seed), progress=progress, echo=echo
        )
    return {
        "run": str(run_dir),
        "steps": steps,
        "resumed_from": start,
        "encoder": str(network_path(run_dir, "encoder")),
        "reconstructions": str(run_dir / "samples" / f"encoder-step-{steps:06d}.png"),
        "calibration": str(run_dir / CALIBRATION_FILE),
    }


def _save_real_grid(data_dir, path: Path) -> None:
    if path.exists():
        return
    batch = next(iter(load_dataset(data_dir, batch_size=64, shuffle=True, seed=1)))
    save_png(path, tile(batch["image"].numpy(), columns=8), scale=2)
