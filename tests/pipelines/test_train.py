"""`train gan` as users run it: checkpoints, logs, resume after a kill, NaN guard, tf.distribute."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfanomaly._tf import bf16_capped
from tfanomaly.errors import ConfigError
from tfanomaly.pipelines import train as train_module
from tfanomaly.pipelines.config import GanTrainConfig, IngestConfig
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.loop import TrainingDivergedError
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.pipelines.train import train_gan
from tfanomaly.simulate.config import SurveyConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A 16-px simulated survey, ingested (what the tiny16 preset trains on)."""
    folder = tmp_path_factory.mktemp("survey")
    simulate_survey(folder / "s.h5", SurveyConfig(n_objects=200, size=16, seed=1), progress=False)
    ingest(folder / "s.h5", folder / "ds", IngestConfig(shard_size=64), progress=False)
    return folder / "ds"


def config(**kwargs):
    # A few steps learn nothing yet: the collapse check (tests/pipelines/test_learning.py) is off.
    values = dict(
        preset="tiny16", steps=6, batch_size=8, checkpoint_every=2, log_every=1, check=False
    )
    values.update(kwargs)
    return GanTrainConfig(**values)


def event_tags(log_dir):
    tags = set()
    for path in log_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_train_writes_checkpoints_logs_samples_and_models(tiny_data, tmp_path):
    run = tmp_path / "run"
    summary = train_gan(tiny_data, run, config(), progress=False, echo=lambda *_: None)
    assert summary["steps"] == 6
    assert tf.train.latest_checkpoint(run / "checkpoints" / "gan").endswith("ckpt-6")
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "gan-step-000002.png",
        "gan-step-000004.png",
        "gan-step-000006.png",
        "real.png",
    ]
    assert {"gan/d_loss", "gan/g_loss", "gan/wasserstein", "gan/gp", "gan/preview"} <= event_tags(
        run / "logs"
    )
    generator = keras.models.load_model(run / "generator.keras")
    assert generator(tf.zeros((2, 8))).shape == (2, 16, 16, 3)
    saved = json.loads((run / "run.json").read_text())
    assert saved["model"]["name"] == "tiny16" and saved["data"]["count"] == 200
    stats = json.loads((run / "training_gan.json").read_text())
    assert stats["steps"] == 6 and stats["images_per_second"] > 0


def test_resume_continues_step_count_and_optimizer_state(tiny_data, tmp_path):
    run = tmp_path / "run"
    train_gan(tiny_data, run, config(steps=4), progress=False, echo=lambda *_: None)
    messages = []
    summary = train_gan(tiny_data, run, config(steps=8), progress=False, echo=messages.append)
    assert summary["steps"] == 8 and summary["resumed_from"] == 4
    assert "resuming" in messages[0] and "step 4" in messages[0]
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "gan"))
    iterations = [k for k in reader.get_variable_to_shape_map() if "iteration" in k]
    values = sorted(int(reader.get_tensor(k)) for k in iterations)
    assert values == [8, 8 * 5]  # generator and critic optimizers, both restored and continued
    with pytest.raises(ConfigError, match=r"gan was trained with other options \(batch_size\)"):
        train_gan(tiny_data, run, config(steps=9, batch_size=4), progress=False)


def test_preset_must_match_the_data(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="preset cpu32 is for 32x32 cutouts but .* holds 16x16"):
        train_gan(tiny_data, tmp_path / "run", config(preset="cpu32"), progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train_gan(tiny_data, run, config(steps=2), progress=False, echo=lambda *_: None)
    good = tf.train.load_checkpoint(str(run / "checkpoints" / "gan"))
    weights = {k: good.get_tensor(k) for k in good.get_variable_to_shape_map() if "kernel" in k}
    # Resume on poisoned data: the losses turn NaN/inf at the first new step.
    clean = train_module.image_dataset
    monkeypatch.setattr(
        train_module, "image_dataset", lambda *a, **k: clean(*a, **k).map(lambda x: x * np.inf)
    )
    with pytest.raises(TrainingDivergedError, match=r"NaN/inf at step 3.*ckpt-2"):
        train_gan(tiny_data, run, config(steps=6), progress=False, echo=lambda *_: None)
    kept = tf.train.load_checkpoint(str(run / "checkpoints" / "gan"))
    assert tf.train.latest_checkpoint(run / "checkpoints" / "gan").endswith("ckpt-2")
    for key, value in weights.items():
        np.testing.assert_array_equal(kept.get_tensor(key), value)


@pytest.mark.slow
def test_sigkill_mid_run_then_the_same_command_resumes(tiny_data, tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "tfanomaly.cli",
        "train",
        "gan",
        str(tiny_data),
        "--out",
        str(run),
        "--preset",
        "tiny16",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "3",
        "--no-check",
        "--quiet",
    ]
    process = subprocess.Popen([*cmd, "--steps", "100000"], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120

    def newest_step() -> int:
        # The manager's state file names a checkpoint only once it is complete (its .index file
        # appears a moment before): wait on that, or a kill in between finds an older one.
        latest = tf.train.latest_checkpoint(run / "checkpoints" / "gan")
        return int(latest.rsplit("-", 1)[1]) if latest else 0

    while time.time() < deadline and newest_step() < 6:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    latest = tf.train.latest_checkpoint(run / "checkpoints" / "gan")
    assert latest is not None, "no checkpoint before the kill"
    killed_at = int(latest.rsplit("-", 1)[1])
    assert killed_at >= 6
    result = subprocess.run(
        [*cmd, "--steps", str(killed_at + 3)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming {run} gan from step {killed_at}" in result.stdout
    assert f"trained {killed_at + 3} generator steps" in result.stdout


@pytest.mark.slow
def test_training_under_mirrored_strategy_on_two_logical_cpus(tiny_data, tmp_path):
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfanomaly.pipelines.config import GanTrainConfig
        from tfanomaly.pipelines.loop import distribution_strategy
        from tfanomaly.pipelines.train import train_gan
        strategy = distribution_strategy(["/cpu:0", "/cpu:1"])
        config = GanTrainConfig(preset="tiny16", steps=4, batch_size=8, checkpoint_every=2,
                                ema_decay=0.9, check=False)
        summary = train_gan({str(tiny_data)!r}, {str(tmp_path / "run")!r}, config,
                            strategy=strategy, progress=False)
        print("replicas", strategy.num_replicas_in_sync, "steps", summary["steps"])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replicas 2 steps 4" in result.stdout


def test_generator_moving_average_is_checkpointed_resumed_and_saved(tiny_data, tmp_path):
    run = tmp_path / "run"
    echo = lambda *_: None  # noqa: E731
    train_gan(tiny_data, run, config(steps=4, ema_decay=0.5), progress=False, echo=echo)
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "gan"))
    assert any(k.startswith("ema/") for k in reader.get_variable_to_shape_map())
    averaged = keras.models.load_model(run / "generator.keras").get_weights()
    last = keras.models.load_model(run / "generator_raw.keras").get_weights()
    assert len(averaged) == len(last)
    assert any(not np.allclose(a, b) for a, b in zip(averaged, last, strict=True))
    # The checkpoint holds the average that generator.keras carries; a resumed run restores it
    # (restore asserts every saved object matched) and keeps averaging.
    ema = sorted(
        (k for k in reader.get_variable_to_shape_map() if k.startswith("ema/")),
        key=lambda k: int(k.split("/")[1][1:]),
    )
    for key, value in zip(ema, averaged, strict=True):
        np.testing.assert_array_equal(reader.get_tensor(key), value)
    train_gan(tiny_data, run, config(steps=6, ema_decay=0.5), progress=False, echo=echo)
    resumed = keras.models.load_model(run / "generator.keras").get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(averaged, resumed, strict=True))
    with pytest.raises(ConfigError, match="ema-decay must be in"):
        train_gan(tiny_data, tmp_path / "bad", config(ema_decay=1.0), progress=False)


def test_moving_average_follows_its_formula():
    from tfanomaly.models.config import get_preset
    from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer

    gan = WGANGP.from_preset(get_preset("tiny16"), seed=0, ema_decay=0.9)
    gan.compile(d_optimizer=paper_optimizer(), g_optimizer=paper_optimizer())
    start = [w.numpy() for w in gan.generator.weights]
    images = tf.random.uniform((5 * 4, 16, 16, 3), seed=1)
    expected = start
    for step in range(1, 4):
        gan.train_step(images)
        decay = min(0.9, (1 + step) / (10 + step))
        current = [w.numpy() for w in gan.generator.weights]
        expected = [decay * e + (1 - decay) * c for e, c in zip(expected, current, strict=True)]
    for average, value in zip(gan.ema_weights, expected, strict=True):
        np.testing.assert_allclose(average.numpy(), value, rtol=1e-5, atol=1e-6)
    copy = gan.averaged_generator()
    np.testing.assert_allclose(copy.get_weights()[0], expected[0], rtol=1e-5, atol=1e-6)
    assert copy is not gan.generator


@pytest.mark.skipif(bf16_capped(), reason="oneDNN capped below its bf16 kernels aborts on them")
def test_mixed_bfloat16_trains_with_float32_outputs(tiny_data, tmp_path):
    run = tmp_path / "run"
    train_gan(
        tiny_data,
        run,
        config(steps=2, precision="mixed_bfloat16"),
        progress=False,
        echo=lambda *_: None,
    )
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    generator = keras.models.load_model(run / "generator.keras")
    images = generator(tf.zeros((1, 8)))
    assert images.dtype == tf.float32 and np.isfinite(images.numpy()).all()


def test_encoder_trains_through_the_frozen_gan_and_resumes(tiny_data, tmp_path):
    from tfanomaly.pipelines.config import EncoderTrainConfig
    from tfanomaly.pipelines.train import train_encoder

    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="no generator.keras; run `tfanomaly train gan` first"):
        (run).mkdir()
        (run / "run.json").write_text("{}")
        train_encoder(run, EncoderTrainConfig(steps=2), progress=False)
    (run / "run.json").unlink()
    train_gan(tiny_data, run, config(steps=2), progress=False, echo=lambda *_: None)
    enc = EncoderTrainConfig(steps=3, batch_size=8, checkpoint_every=2, check=False)
    summary = train_encoder(run, enc, progress=False, echo=lambda *_: None)
    assert summary["steps"] == 3
    encoder = keras.models.load_model(run / "encoder.keras")
    assert encoder(tf.zeros((2, 16, 16, 3))).shape == (2, 8)
    messages = []
    summary = train_encoder(
        run, dataclasses.replace(enc, steps=5), progress=False, echo=messages.append
    )
    assert summary["steps"] == 5 and "encoder from step 3" in messages[0]
    assert (run / "samples" / "encoder-step-000005.png").exists()
