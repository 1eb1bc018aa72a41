"""The default score over data families, every setting chosen with the family left out
(leave-one-family-out): which term weights and morphology-term variant hold on families they
were not chosen on, against pixel and morphology baselines.

Seven families of ~4000 32-px cutouts (~5% anomalies), each written when missing into --out/sets:
``sim`` (the simulator with survey noise, every kind), ``real_colour_half`` (real colour cutouts
with artefacts; trained on one half, the other half scored as new survey images),
``real_frames`` (real one-band frames with artefacts), ``ml_ready`` (the simulator's astrophysical
kinds in one band, as ML-ready catalogues ship them: per-image scaled, background clipped to 0,
8-bit), ``radio`` (simulated radio sources, FR I / FR II; bent tails, X-shaped, one-sided jets and
rings as anomalies; clipped and 8-bit), ``groups`` (real colour cutouts whose artefacts come in
groups of 8-15 with the same geometry), ``duplicates`` (real frame tiles, every normal one three
times, flipped or turned). Each is run as a user would (ingest --stretch auto, train gan --preset
cpu32 --steps 1000, train encoder --steps 600, score, evaluate), each stage skipped when its
output exists, into --out/<family>/.

The analysis reads what ``score`` stored: the terms' robust z (as the scorer has them), morphology
term variants from the stored raw morphology parameters, and morphology baselines (isolation
forest, 5-NN, robust Mahalanobis on standard non-parametric parameters computed here with numpy).
For each family the candidate (weights x morphology variant x weighting) with the best worst
margin (its AUROC minus the best baseline's) over the other families is reported on the family.

  python studies/families.py [--out studies/out/families] [--families a,b] [--runs-only]
      [--analyse-only]
About 7 minutes per family on 2 cores (the half-protocol family ~9); the analysis ~2 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import common
import h5py
import numpy as np

OUT = common.OUT / "families"
FAMILIES = (
    "ml_ready",
    "groups",
    "duplicates",
    "radio",
    "real_colour_half",
    "real_frames",
    "sim",
)
SIZE, COUNT, FRACTION = 32, 4000, 0.05
ASTRO_KINDS = ("merger", "tidal_feature", "star_forming_clump", "lensed_arc")
RADIO_KINDS = ("normal", "bent_tail", "x_shaped", "one_sided_jet", "ring_halo")


# --- the family sets ------------------------------------------------------------------------


def eight_bit(images: np.ndarray) -> np.ndarray:
    """Each cutout divided by its maximum and quantised to 8 bits, as ML-ready catalogues ship."""
    peak = images.reshape(len(images), -1).max(axis=1).reshape(-1, 1, 1, 1)
    return np.round(images / np.maximum(peak, 1e-12) * 255.0) / 255.0


def build_sim(path: Path) -> None:
    """The simulator with survey noise (sim_noise's noise model), every kind, seed 510."""
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.simulate.config import SurveyConfig, sky_sigma
    from tfanomaly.simulate.noise import SurveyNoise, apply_survey_noise

    config = SurveyConfig(n_objects=COUNT, size=SIZE, seed=510, anomaly_fraction=FRACTION)
    simulate_survey(path, config, workers=0, progress=False)
    with h5py.File(path, "r+") as f:
        rng = np.random.default_rng(510)
        f["images"][...] = apply_survey_noise(
            f["images"][...], sky_sigma(config), SurveyNoise(), rng
        )


def build_ml_ready(path: Path) -> None:
    """The simulator's astrophysical kinds only, r band, background clipped at the median, per-image
    scaled, 8-bit (seed 520)."""
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.simulate.config import ANOMALY_KINDS, KIND_NAMES, SurveyConfig

    kinds = tuple(k for k in ASTRO_KINDS if k in ANOMALY_KINDS)
    config = SurveyConfig(
        n_objects=COUNT, size=SIZE, seed=520, anomaly_fraction=FRACTION, kinds=kinds
    )
    raw = path.with_suffix(".raw.h5")
    simulate_survey(raw, config, workers=0, progress=False)
    with h5py.File(raw) as f:
        images, labels = f["images"][..., 1:2].astype(np.float64), f["labels"][...]
    sky = np.median(images.reshape(len(images), -1), axis=1).reshape(-1, 1, 1, 1)
    images = eight_bit(np.clip(images - sky, 0.0, None))
    common.write_set(path, images, labels, KIND_NAMES, ("r",))
    raw.unlink()


def _blob(y, x, cy, cx, sa, sb, angle):
    """An elliptical Gaussian of unit peak, widths ``sa`` along ``angle`` and ``sb`` across."""
    dy, dx = y - cy, x - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    return np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2))


def _jet(y, x, cy, cx, angle, length, curvature, flux, rng, lobe: bool):
    """Emission along a path from (cy, cx) at ``angle`` bending by ``curvature`` rad per px: a jet
    fading and widening outwards, or (``lobe``) a faint channel ending in a lobe and hot spot."""
    image = np.zeros_like(y)
    steps = max(int(length * 2), 4)
    py, px, heading = cy, cx, angle
    for step in range(steps):
        t = (step + 1) / steps
        py += 0.5 * math.sin(heading)
        px += 0.5 * math.cos(heading)
        heading += 0.5 * curvature
        width = 0.8 + 1.6 * t
        weight = 0.1 if lobe else math.exp(-2.5 * t)
        image += weight * _blob(y, x, py, px, width, width, heading)
    if lobe:
        size = rng.uniform(1.5, 3.0)
        image += 2.5 * _blob(y, x, py, px, size, size * rng.uniform(0.6, 1.0), heading)
        image += 2.0 * _blob(y, x, py, px, 0.8, 0.8, 0.0)  # the hot spot at the end
    return flux * image / max(image.sum(), 1e-12)


def radio_source(kind: str, rng) -> np.ndarray:
    """One (SIZE, SIZE) radio-like source in units of the noise sigma (before clipping)."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(float)
    cy, cx = (SIZE - 1) / 2 + rng.normal(0, 0.7, 2)
    angle = rng.uniform(0, 2 * math.pi)
    total = 10 ** rng.uniform(2.5, 3.5)  # integrated flux in sigma x pixels
    core = rng.uniform(0.05, 0.3) * total
    image = core * _blob(y, x, cy, cx, 0.9, 0.9, 0.0) / (2 * math.pi * 0.81)
    lobe = rng.random() < 0.5  # FR II (lobes, hot spots) or FR I (jets fading outwards)
    length = rng.uniform(5.0, 13.0)
    ratio = rng.uniform(0.5, 2.0)
    rest = total - core
    if kind == "normal" and rng.random() < 0.15:
        return image * total / core  # compact
    if kind in ("normal", "x_shaped"):
        for side, share in ((0, ratio / (1 + ratio)), (1, 1 / (1 + ratio))):
            image += _jet(
                y,
                x,
                cy,
                cx,
                angle + side * math.pi,
                length * rng.uniform(0.8, 1.2),
                rng.normal(0, 0.01),
                rest * share,
                rng,
                lobe,
            )
        if kind == "x_shaped":  # a second, fainter pair of wings at 40-90 degrees
            turn = rng.choice([-1, 1]) * rng.uniform(0.7, 1.57)
            for side in (0, 1):
                image += _jet(
                    y,
                    x,
                    cy,
                    cx,
                    angle + turn + side * math.pi,
                    length * rng.uniform(0.6, 1.0),
                    0.0,
                    rest * rng.uniform(0.2, 0.4),
                    rng,
                    False,
                )
    elif kind == "bent_tail":  # both jets swept back to one side (wide-angle / narrow-angle tail)
        bend = rng.uniform(0.08, 0.2) * rng.choice([-1, 1])
        opening = rng.uniform(0.3, 1.2)
        for side in (1, -1):
            image += _jet(
                y,
                x,
                cy,
                cx,
                angle + side * (math.pi / 2 - opening / 2),
                length,
                -side * bend,
                rest / 2,
                rng,
                lobe,
            )
    elif kind == "one_sided_jet":
        image += _jet(y, x, cy, cx, angle, length, rng.normal(0, 0.02), rest, rng, lobe)
    elif kind == "ring_halo":
        r = np.hypot(y - cy, x - cx)
        if rng.random() < 0.5:
            radius, width = rng.uniform(4.0, 10.0), rng.uniform(0.8, 1.8)
            shape = np.exp(-0.5 * ((r - radius) / width) ** 2)
        else:
            shape = np.exp(-0.5 * (r / rng.uniform(4.0, 8.0)) ** 2)
        image += rest * shape / shape.sum()
    else:
        raise ValueError(kind)
    return image


def build_radio(path: Path, seed: int = 530) -> None:
    """Simulated radio sources (FR I jets / FR II lobes; anomalies: bent tails, X-shaped, one-sided
    jets, rings and haloes), Gaussian noise of sigma 1, clipped to 0 below 2 sigma, 8-bit."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(COUNT, np.uint8)
    chosen = rng.choice(COUNT, size=round(FRACTION * COUNT), replace=False)
    labels[chosen] = rng.integers(1, len(RADIO_KINDS), size=len(chosen))
    images = np.empty((COUNT, SIZE, SIZE, 1))
    for k in range(COUNT):
        image = radio_source(RADIO_KINDS[labels[k]], rng) + rng.normal(0, 1, (SIZE, SIZE))
        images[k, ..., 0] = np.where(image < 2.0, 0.0, image)
    common.write_set(path, eight_bit(images), labels, RADIO_KINDS, ("radio",))


def colour_set(rng, n: int) -> np.ndarray:
    """``n`` real colour cutouts with the simulator's sky noise added (as real_colour_fresh)."""
    images = common.colour_cutouts(common.colour_images(common.REAL_CACHE), n, SIZE, rng)
    return (images + rng.normal(0.0, common.SKY_SIGMA / 2, images.shape)).astype(np.float32)


def build_real_colour_half(path: Path) -> None:
    """Real colour cutouts with artefacts (seed 540), 2 x COUNT: ``path`` the first half (trained
    on), ``<stem>_score.h5`` the second (scored with the first half's run; other object ids)."""
    rng = np.random.default_rng(540)
    images, labels = common.with_artefacts(colour_set(rng, 2 * COUNT), FRACTION, rng)
    score_path = path.with_name(path.stem + "_score.h5")
    common.write_set(score_path, images[COUNT:], labels[COUNT:], common.ARTEFACTS, "gri")
    with h5py.File(score_path, "r+") as f:
        f["object_ids"][...] = f["object_ids"][...] + np.uint64(COUNT)
    common.write_set(path, images[:COUNT], labels[:COUNT], common.ARTEFACTS, "gri")


def build_real_frames(path: Path) -> None:
    """Real one-band frame tiles (tuning and fresh frames) with artefacts (seed 550)."""
    rng = np.random.default_rng(550)
    frames = common.real_frames(common.REAL_CACHE)
    names = common.TUNE_FRAMES + common.FRESH_FRAMES
    images, labels = common.with_artefacts(
        common.tiles(frames, names, COUNT, SIZE, rng), FRACTION, rng
    )
    common.write_set(path, images, labels, common.ARTEFACTS, ("r",))


def build_groups(path: Path, seed: int = 560) -> None:
    """Real colour cutouts whose artefacts come in groups of 8-15 cutouts with the same artefact
    (the same kind, position, angle, brightness and colour: one random stream per group), as a
    satellite trail or a bad column crosses neighbouring stamps; ~6% anomalous."""
    rng = np.random.default_rng(seed)
    images = colour_set(rng, COUNT)
    labels = np.zeros(COUNT, np.uint8)
    free = list(rng.permutation(COUNT))
    while (labels > 0).sum() < 0.06 * COUNT:
        members = [free.pop() for _ in range(rng.integers(8, 16))]
        kind = int(rng.integers(1, len(common.ARTEFACTS)))
        group_seed = int(rng.integers(2**31))
        for k in members:
            draw = np.random.default_rng(group_seed)
            images[k] = common.inject(images[k], common.ARTEFACTS[kind], common.SKY_SIGMA / 2, draw)
            labels[k] = kind
    common.write_set(path, images, labels, common.ARTEFACTS, "gri")


def turned(tile: np.ndarray, rng) -> np.ndarray:
    """The same pixels, half the time flipped and/or turned by a multiple of 90 degrees."""
    if rng.random() < 0.5:
        return tile
    tile = np.rot90(tile, rng.integers(4))
    return tile[:, ::-1] if rng.random() < 0.5 else tile


def build_duplicates(path: Path, seed: int = 570) -> None:
    """Real frame tiles where every normal tile occurs three times (the same pixels, sometimes
    flipped or turned, as overlapping tracts give); the anomalies (artefacts) are unique."""
    rng = np.random.default_rng(seed)
    frames = common.real_frames(common.REAL_CACHE)
    names = common.TUNE_FRAMES + common.FRESH_FRAMES
    n_anomalies = round(FRACTION * COUNT)
    unique = (COUNT - n_anomalies) // 3
    normal = common.tiles(frames, names, unique, SIZE, rng)
    copies = np.stack([turned(normal[k // 3], rng) for k in range(3 * unique)])
    fresh = common.tiles(frames, names, n_anomalies, SIZE, rng)
    kinds = rng.integers(1, len(common.ARTEFACTS), size=n_anomalies)
    for k in range(n_anomalies):
        sigma = max(common.sky_noise(fresh[k][..., 0]), 1e-3 * common.SKY_SIGMA)
        fresh[k] = common.inject(fresh[k], common.ARTEFACTS[kinds[k]], sigma, rng)
    images = np.concatenate([copies, fresh])
    labels = np.concatenate([np.zeros(len(copies), np.uint8), kinds.astype(np.uint8)])
    order = rng.permutation(len(images))
    common.write_set(path, images[order], labels[order], common.ARTEFACTS, ("r",))


BUILDERS = {
    "sim": build_sim,
    "real_colour_half": build_real_colour_half,
    "real_frames": build_real_frames,
    "ml_ready": build_ml_ready,
    "radio": build_radio,
    "groups": build_groups,
    "duplicates": build_duplicates,
}


def family_set(name: str, out: Path) -> Path:
    """The family's HDF5 file (the trained-on one), written when missing."""
    path = out / "sets" / f"{name}.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        BUILDERS[name](path)
    return path


# --- the runs -------------------------------------------------------------------------------


def run_family(name: str, out: Path, timings: dict) -> None:
    """Ingest, train gan, train encoder, score, evaluate, each skipped when its output exists.
    The half family: trained on the first half; the second half ingested alone and scored with
    the first half's run (``scores``), the first half scored too (``scores_train``)."""
    from tfanomaly.data.manifest import MANIFEST
    from tfanomaly.pipelines.config import IngestConfig, ScoreConfig
    from tfanomaly.pipelines.evaluate import evaluate
    from tfanomaly.pipelines.ingest import ingest
    from tfanomaly.pipelines.score import score

    source = family_set(name, out)
    folder = out / name
    mine = timings.setdefault(name, {})
    timed = common.stage_timer(mine)
    data, run = common.user_run(
        folder,
        source,
        stretch=IngestConfig.stretch,
        preset=common.PRESETS[SIZE],
        gan_steps=1000,
        encoder_steps=600,
        timings=mine,
    )
    if name == "real_colour_half":
        if not (folder / "scores_train" / "results.h5").exists():
            train = folder / "scores_train"
            timed("score train", score, run, data, train, ScoreConfig(), progress=False)
        data = folder / "tfrecords_score"
        if not (data / MANIFEST).exists():
            config = IngestConfig(shard_size=1024, stretch=IngestConfig.stretch)
            score_source = source.with_name(source.stem + "_score.h5")
            timed("ingest score", ingest, score_source, data, config, progress=False)
    results = folder / "scores"
    if not (results / "evaluation.json").exists():
        timed("score", score, run, data, results, ScoreConfig(), progress=False, echo=common.quiet)
        timed("evaluate", evaluate, results, data_dir=data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--runs-only", action="store_true", help="run, do not analyse")
    parser.add_argument("--analyse-only", action="store_true", help="analyse finished runs")
    args = parser.parse_args()
    print(common.machine(), flush=True)
    out = Path(args.out)
    wanted = args.families.split(",")
    unknown = set(wanted) - set(FAMILIES)
    if unknown:
        parser.error(f"--families: unknown {sorted(unknown)}; the families are {FAMILIES}")
    if not args.analyse_only:
        timings_file = out / "timings.json"
        for name in wanted:
            family_set(name, out)
        for name in wanted:
            timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
            run_family(name, out, timings)
            timings_file.write_text(json.dumps(timings, indent=1))
            print(f"{name}: done {timings.get(name)}", flush=True)
    if not args.runs_only:
        analyse(out, [name for name in wanted if (out / name / "scores").exists()])


def analyse(out: Path, names) -> None:
    raise NotImplementedError


if __name__ == "__main__":
    main()
