"""The default score over data families, every setting chosen with the family left out
(leave-one-family-out): which term weights and morphology-term variant hold on families they
were not chosen on, against pixel and morphology baselines.

Twelve families of ~4000 32-px cutouts (~5% anomalies), each written when missing into --out/sets:
``sim`` (the simulator with survey noise, every kind), ``real_colour_half`` (real colour cutouts
with artefacts; trained on one half, the other half scored as new survey images),
``real_frames`` (real one-band frames with artefacts), ``ml_ready`` (the simulator's astrophysical
kinds in one band, as ML-ready catalogues ship them: per-image scaled, background clipped to 0,
8-bit), ``radio`` (simulated radio sources, FR I / FR II; bent tails, X-shaped, one-sided jets and
rings as anomalies; clipped and 8-bit), ``groups`` (real colour cutouts whose artefacts come in
groups of 8-15 similar cutouts, overlapping stamps of one frame, with the same artefact),
``groups_scattered`` (the same artefact over 8-15 unrelated cutouts), ``duplicates`` (real frame tiles, every normal one three
times, flipped or turned). Each is run as a user would (ingest --stretch auto, train gan --preset
cpu32 --steps 1000, train encoder --steps 600, score, evaluate), each stage skipped when its
output exists, into --out/<family>/.

The analysis reads what ``score`` stored: the terms' robust z (as the scorer has them), morphology
term variants from the stored raw morphology parameters, and morphology baselines (isolation
forest, 5-NN, robust Mahalanobis on standard non-parametric parameters computed here with numpy).
For each family the candidate (weights x morphology variant x weighting x combiner) with the best
worst margin (its AUROC minus the best baseline's) over the other families is reported on the
family; candidates within NOISE (0.01) of that worst margin are not distinct, nor are those among
them within NOISE_AP (0.02) of the best worst AP margin (its AP minus the best baseline's); the
best mean AUROC margin decides between those.

The last four were built as fresh families, run and reported before any choice saw them:
``fresh_colour`` and ``fresh_frames`` (other draws of the real colour cutouts and frame tiles with
six kinds no family above has: optical ghosts, masked strips, band offsets, transients, scattered
light, bleed trails), ``fresh_sim`` and ``fresh_sim_bright`` (another, numpy-only galaxy code:
Sersic bulge and disk, Moffat PSF, with rings, polar rings, dust lanes, quasars, compact blue
dwarfs and double nuclei; a faint sample and one as bright as the simulator's). FRESH_FAMILIES
holds such families while no choice has seen them.

  python studies/families.py [--out studies/out/families] [--families a,b] [--runs-only]
      [--analyse-only] [--combiners mean,softmax,positive,exp1]
5-9 minutes per family on 2 cores (~80 for the twelve); the analysis ~10 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import common
import h5py
import numpy as np

from tfanomaly.models.score_config import DEFAULT_TERM_WEIGHTS, SOFTMAX_TEMPERATURE, ScoreSettings
from tfanomaly.models.term_health import NOISE_MODEL_TERMS, noise_model_finding

OUT = common.OUT / "families"
FAMILIES = (
    "ml_ready",
    "groups",
    "groups_scattered",
    "duplicates",
    "radio",
    "real_colour_half",
    "real_frames",
    "sim",
    # Built as fresh families (kinds no family above had, another galaxy code), first scored
    # with no choice having seen them, then made development families (docs Results >
    # Detection > Fresh families).
    "fresh_colour",
    "fresh_frames",
    "fresh_sim",
    "fresh_sim_bright",
)
# Families run as the others but never analysed with them, so in no choice, until they are
# moved into FAMILIES (``--fresh-in-choice`` analyses them too); families_bootstrap.py
# --families reports them. None now: the next check on data no choice saw needs new ones.
FRESH_FAMILIES: tuple[str, ...] = ()
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


def build_groups_scattered(path: Path, seed: int = 560) -> None:
    """Real colour cutouts whose artefacts come in groups of 8-15 cutouts with the same artefact
    (the same kind, position, angle, brightness and colour: one random stream per group) laid over
    unrelated cutouts; ~6% anomalous."""
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


def crop(image: np.ndarray, y: int, x: int, side: int) -> np.ndarray:
    """The (SIZE, SIZE, 3) cutout of ``image`` at (y, x) of ``side`` px, area-resized, in the
    simulator's flux range (as common.colour_cutouts)."""
    from PIL import Image

    region = image[y : y + side, x : x + side].astype(np.float32)
    return 0.5 * np.stack(
        [
            np.asarray(Image.fromarray(region[..., c]).resize((SIZE, SIZE), Image.Resampling.BOX))
            for c in range(3)
        ],
        axis=-1,
    )


def build_groups(path: Path, seed: int = 580) -> None:
    """Real colour cutouts where each artefact occurs in a group of 8-15 similar cutouts, as a
    satellite trail or a bad column crosses neighbouring, overlapping stamps of one field: the
    group's stamps are crops of the same frame, shifted by up to 15% of their side, and carry the
    same artefact (kind, position, angle, brightness, colour: one random stream per group); ~6%
    anomalous. The normal cutouts are common.colour_cutouts of the same frames."""
    rng = np.random.default_rng(seed)
    frames = common.colour_images(common.REAL_CACHE)
    groups = []
    while sum(len(members) for _, members in groups) < 0.06 * COUNT:
        frame = frames[rng.integers(len(frames))]
        h, w, _ = frame.shape
        side = int(rng.uniform(0.3, 0.9) * min(h, w))
        y0 = np.clip(h / 2 - side / 2 + rng.normal(0, 0.05 * h), 0, h - side)
        x0 = np.clip(w / 2 - side / 2 + rng.normal(0, 0.05 * w), 0, w - side)
        kind = int(rng.integers(1, len(common.ARTEFACTS)))
        group_seed = int(rng.integers(2**31))
        members = []
        for _ in range(rng.integers(8, 16)):
            dy, dx = rng.uniform(-0.15, 0.15, 2) * side
            y = int(np.clip(y0 + dy, 0, h - side))
            x = int(np.clip(x0 + dx, 0, w - side))
            image = crop(frame, y, x, side) + rng.normal(0.0, common.SKY_SIGMA / 2, (SIZE, SIZE, 3))
            draw = np.random.default_rng(group_seed)
            members.append(common.inject(image, common.ARTEFACTS[kind], common.SKY_SIGMA / 2, draw))
        groups.append((kind, members))
    anomalies = np.stack([m for _, members in groups for m in members])
    kinds = np.array([kind for kind, members in groups for _ in members], np.uint8)
    normal = colour_set(rng, COUNT - len(anomalies))
    images = np.concatenate([normal, anomalies.astype(np.float32)])
    labels = np.concatenate([np.zeros(len(normal), np.uint8), kinds])
    order = rng.permutation(len(images))
    common.write_set(path, images[order], labels[order], common.ARTEFACTS, "gri")


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


# --- fresh families: kinds no family above has, never in a choice ---------------------------

FRESH_KINDS = (
    "normal",
    "ghost",
    "masked_strip",
    "band_offset",
    "transient",
    "scattered_light",
    "saturation_bleed",
)


def inject_fresh(image: np.ndarray, kind: str, sigma: float, rng) -> np.ndarray:
    """One of FRESH_KINDS laid over a (H, W, C) flux cutout whose sky noise is ``sigma``: an
    optical ghost (a defocused reflection: a ring of radius 3-10 px, 2-8 sigma, tinted), a masked
    strip (2-5 rows or columns of exactly 0, a chip gap or missing data), a band offset (one band
    scaled by 0.4-0.7 or 1.5-2.5: a calibration error; with one band, the cutout's light scaled),
    a transient (a point source of 8-40 sigma in one band, 2-9 px from the centre), scattered
    light (a gradient of 4-12 sigma across the stamp) or a saturated star's bleed trail (a flat
    saturated core and a 1-2 px wide vertical trail at the saturation level)."""
    out = image.copy()
    size, channels = image.shape[0], image.shape[2]
    y, x = np.mgrid[:size, :size].astype(float)
    if kind == "ghost":
        y0, x0 = rng.uniform(0.1, 0.9, 2) * size
        radius, width = rng.uniform(3.0, 10.0), rng.uniform(0.8, 2.0)
        ring = np.exp(-0.5 * ((np.hypot(y - y0, x - x0) - radius) / width) ** 2)
        out += ring[..., None] * rng.uniform(2.0, 8.0) * sigma * rng.uniform(0.3, 1.7, channels)
    elif kind == "masked_strip":
        width = int(rng.integers(2, 6))
        start = int(rng.integers(0, size - width))
        if rng.random() < 0.5:
            out[start : start + width] = 0.0
        else:
            out[:, start : start + width] = 0.0
    elif kind == "band_offset":
        band = int(rng.integers(channels))
        factor = rng.uniform(0.4, 0.7) if rng.random() < 0.5 else rng.uniform(1.5, 2.5)
        out[..., band] *= factor
    elif kind == "transient":
        distance, angle = rng.uniform(2.0, 9.0), rng.uniform(0, 2 * math.pi)
        y0, x0 = size / 2 + distance * math.sin(angle), size / 2 + distance * math.cos(angle)
        width = rng.uniform(0.8, 1.5)
        point = np.exp(-0.5 * ((y - y0) ** 2 + (x - x0) ** 2) / width**2)
        out[..., int(rng.integers(channels))] += point * rng.uniform(8.0, 40.0) * sigma
    elif kind == "scattered_light":
        angle = rng.uniform(0, 2 * math.pi)
        ramp = ((x - size / 2) * math.cos(angle) + (y - size / 2) * math.sin(angle)) / size + 0.5
        out += ramp[..., None] * rng.uniform(4.0, 12.0) * sigma * rng.uniform(0.6, 1.4, channels)
    elif kind == "saturation_bleed":
        y0, x0 = rng.uniform(0.15, 0.85, 2) * size
        level = rng.uniform(200.0, 1000.0) * sigma
        star = level * (1.0 + ((x - x0) ** 2 + (y - y0) ** 2) / 2.0**2) ** -2.5
        half = rng.uniform(0.5, 1.0)
        length = rng.uniform(5.0, 15.0)
        trail = (np.abs(x - x0) <= half) & (np.abs(y - y0) <= length)
        star = np.where(trail, level, np.minimum(star, level))
        out = np.maximum(out, star[..., None] * np.ones(channels))
    else:
        raise ValueError(kind)
    return out


def with_fresh_kinds(images: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """The cutouts with FRACTION of them carrying one of FRESH_KINDS; labels index it."""
    labels = np.zeros(len(images), np.uint8)
    chosen = rng.choice(len(images), size=round(FRACTION * len(images)), replace=False)
    labels[chosen] = rng.integers(1, len(FRESH_KINDS), size=len(chosen))
    out = images.copy()
    for k in chosen:
        sigma = max(common.sky_noise(images[k][..., 0]), 1e-3 * common.SKY_SIGMA)
        out[k] = inject_fresh(images[k], FRESH_KINDS[labels[k]], sigma, rng)
    return out, labels


def build_fresh_colour(path: Path) -> None:
    """Real colour cutouts (other draws, seed 600) with FRESH_KINDS."""
    rng = np.random.default_rng(600)
    images, labels = with_fresh_kinds(colour_set(rng, COUNT), rng)
    common.write_set(path, images, labels, FRESH_KINDS, "gri")


def build_fresh_frames(path: Path) -> None:
    """Real one-band frame tiles (other draws, seed 610) with FRESH_KINDS."""
    rng = np.random.default_rng(610)
    frames = common.real_frames(common.REAL_CACHE)
    tiles = common.tiles(frames, common.TUNE_FRAMES + common.FRESH_FRAMES, COUNT, SIZE, rng)
    images, labels = with_fresh_kinds(tiles, rng)
    common.write_set(path, images, labels, FRESH_KINDS, ("r",))


SIM_KINDS = (
    "normal",
    "ring",
    "polar_ring",
    "dust_lane",
    "quasar",
    "compact_blue",
    "dual_nucleus",
)


def _sersic(y, x, y0, x0, radius, index, q, angle):
    """A Sersic profile of unit central value (b_n ~ 2n - 1/3)."""
    dy, dx = y - y0, x - x0
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    r = np.sqrt(u**2 + (v / q) ** 2)
    return np.exp(-(2.0 * index - 1.0 / 3.0) * ((r / radius) ** (1.0 / index)))


def fresh_galaxy(kind: str, rng, size: int = SIZE, brightness: float = 400.0) -> np.ndarray:
    """A (size, size, 3) gri galaxy of another simple code than the package's simulator: a Sersic
    bulge and exponential disk (numpy, no GalSim), a Moffat PSF (beta 3, FWHM 1.5-2.6 px) by FFT,
    red or blue colours, a neighbour in a third of the stamps, and sky and source noise; the
    anomalous kinds are SIM_KINDS: a collisional ring, a polar ring, an edge-on disk with a dust
    lane, a quasar (a point source outshining its host), a compact blue star-forming dwarf, and
    two nuclei. ``brightness``: the median total flux in units of the r band's sky noise per
    pixel (400: a faint sample, peak S/N ~15; 2000: as bright as the simulator's, ~70)."""
    y, x = np.mgrid[:size, :size].astype(float)
    c = size / 2 - 0.5 + rng.normal(0, 0.5, 2)
    radius, q, angle = rng.uniform(2.0, 6.0), rng.uniform(0.35, 1.0), rng.uniform(0, math.pi)
    red = rng.random() < 0.5
    bulge_fraction = rng.uniform(0.3, 0.8) if red else rng.uniform(0.0, 0.3)
    disk = _sersic(y, x, *c, radius, 1.0, q, angle)
    bulge = _sersic(y, x, *c, 0.4 * radius, rng.uniform(2.0, 4.0), min(1.0, q + 0.3), angle)
    light = bulge_fraction * bulge / bulge.sum() + (1 - bulge_fraction) * disk / disk.sum()
    colour = np.array([0.5, 1.0, 1.4]) if red else np.array([0.9, 1.0, 1.05])
    flux = rng.lognormal(math.log(brightness), 0.6)
    bands = [light * colour[b] * flux for b in range(3)]
    if kind == "ring":
        ring_radius = rng.uniform(1.5, 2.5) * radius
        ring = np.exp(-0.5 * ((np.hypot(y - c[0], x - c[1]) - ring_radius) / 1.0) ** 2)
        ring *= flux * rng.uniform(0.3, 0.6) / ring.sum()
        bands = [bands[b] * 0.5 + ring * (1.1, 1.0, 0.8)[b] for b in range(3)]
    elif kind == "polar_ring":
        ring = _sersic(y, x, *c, rng.uniform(1.5, 2.5) * radius, 0.5, 0.15, angle + math.pi / 2)
        ring -= _sersic(y, x, *c, radius, 0.5, 0.15, angle + math.pi / 2)
        ring = np.clip(ring, 0, None)
        ring *= flux * rng.uniform(0.3, 0.6) / max(ring.sum(), 1e-9)
        bands = [bands[b] + ring * (1.0, 1.0, 0.9)[b] for b in range(3)]
    elif kind == "dust_lane":
        disk = _sersic(y, x, *c, radius * 1.3, 1.0, 0.15, angle)
        u = -(x - c[1]) * math.sin(angle) + (y - c[0]) * math.cos(angle)
        lane = 1.0 - rng.uniform(0.6, 0.9) * np.exp(-0.5 * (u / 0.7) ** 2)
        bands = [
            disk / disk.sum() * flux * colour[b] * lane ** (1.4, 1.0, 0.7)[b] for b in range(3)
        ]
    elif kind == "quasar":
        bands = [b * 0.5 for b in bands]
        point = np.zeros((size, size))
        point[int(round(c[0])), int(round(c[1]))] = flux * rng.uniform(1.0, 3.0)
        bands = [bands[b] + point * (1.0, 0.9, 0.8)[b] for b in range(3)]
    elif kind == "compact_blue":
        compact = _sersic(y, x, *c, rng.uniform(0.5, 1.0), 1.0, rng.uniform(0.7, 1.0), angle)
        compact *= flux * 0.7 / compact.sum()
        bands = [compact * (1.6, 1.0, 0.7)[b] for b in range(3)]
    elif kind == "dual_nucleus":
        offset, turn = rng.uniform(2.0, 4.0), rng.uniform(0, 2 * math.pi)
        second = _sersic(
            y, x, c[0] + offset * math.sin(turn), c[1] + offset * math.cos(turn), 0.6, 2.0, 1.0, 0
        )
        first = _sersic(y, x, *c, 0.6, 2.0, 1.0, 0)
        nuclei = (first / first.sum() + second / second.sum()) * flux * 0.25
        bands = [bands[b] + nuclei * colour[b] for b in range(3)]
    elif kind != "normal":
        raise ValueError(kind)
    if rng.random() < 1 / 3:  # a neighbour
        n0 = rng.uniform(0, size, 2)
        neighbour = _sersic(y, x, *n0, rng.uniform(1.0, 3.0), 1.0, rng.uniform(0.4, 1.0), 0.3)
        share = rng.lognormal(math.log(brightness * 0.375), 0.7) / neighbour.sum()
        bands = [bands[b] + neighbour * share * colour[::-1][b] for b in range(3)]
    fwhm = rng.uniform(1.5, 2.6)
    alpha = fwhm / (2 * math.sqrt(2 ** (1 / 3.0) - 1))
    ry, rx = np.minimum(y, size - y), np.minimum(x, size - x)  # distances on the FFT's torus
    psf = (1 + (ry**2 + rx**2) / alpha**2) ** -3.0
    psf_f = np.fft.rfft2(psf / psf.sum())
    image = np.stack([np.fft.irfft2(np.fft.rfft2(b) * psf_f, s=(size, size)) for b in bands], -1)
    sky = np.array([0.8, 1.0, 1.3])
    noisy = image + rng.normal(0.0, 1.0, image.shape) * np.sqrt(
        sky**2 + np.clip(image, 0, None) / 20
    )
    return noisy.astype(np.float32)


def build_fresh_sim(path: Path, seed: int = 620, brightness: float = 400.0) -> None:
    """FRACTION of SIM_KINDS among normal fresh_galaxy cutouts: a faint sample."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(COUNT, np.uint8)
    chosen = rng.choice(COUNT, size=round(FRACTION * COUNT), replace=False)
    labels[chosen] = rng.integers(1, len(SIM_KINDS), size=len(chosen))
    images = np.stack(
        [fresh_galaxy(SIM_KINDS[kind], rng, brightness=brightness) for kind in labels]
    )
    common.write_set(path, images, labels, SIM_KINDS, "gri")


def build_fresh_sim_bright(path: Path) -> None:
    """As fresh_sim (other draws, seed 630), five times as bright: the simulator's S/N."""
    build_fresh_sim(path, seed=630, brightness=2000.0)


BUILDERS = {
    "sim": build_sim,
    "real_colour_half": build_real_colour_half,
    "real_frames": build_real_frames,
    "ml_ready": build_ml_ready,
    "radio": build_radio,
    "groups": build_groups,
    "groups_scattered": build_groups_scattered,
    "duplicates": build_duplicates,
    "fresh_colour": build_fresh_colour,
    "fresh_frames": build_fresh_frames,
    "fresh_sim": build_fresh_sim,
    "fresh_sim_bright": build_fresh_sim_bright,
}


def family_set(name: str, out: Path) -> Path:
    """The family's HDF5 file (the trained-on one), written when missing."""
    path = out / "sets" / f"{name}.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        BUILDERS[name](path)
    return path


# --- the morphology baselines (numpy, independent of the package's morphology code) ----------

SHAPE_NAMES = (
    "r20",
    "r50",
    "r80",
    "concentration",
    "asymmetry",
    "gini",
    "m20",
    "ellipticity",
    "centroid_offset",
    "peak_fraction",
)


def shape_parameters(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) raw flux -> (N, 10 + C - 1) standard non-parametric parameters of the band sum
    (curve-of-growth radii r20/r50/r80 about the centre, concentration 5 log10 r80/r20, rotational
    asymmetry, Gini and M20 of the pixels above 2 sigma of the stamp noise, ellipticity and centroid
    offset from their moments, peak fraction), then the colours of adjacent bands."""
    n, size, _, bands = images.shape
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    radius = np.hypot(x, y).ravel()
    order = np.argsort(radius, kind="stable")
    area_radius = np.sqrt(np.arange(1, size * size + 1) / np.pi)
    aperture = radius <= size / 2
    out = np.zeros((n, len(SHAPE_NAMES) + bands - 1))
    for k in range(n):
        image = images[k].astype(np.float64)
        total = image.sum(axis=-1)
        diff = np.diff(total, axis=1).ravel()
        noise = 1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2.0)
        flat = total.ravel()
        positive = np.where(aperture, np.maximum(flat, 0.0), 0.0)
        flux = max(positive.sum(), 1e-12)
        growth = np.cumsum(positive[order]) / flux
        r20, r50, r80 = (
            area_radius[min(np.searchsorted(growth, f), len(growth) - 1)] for f in (0.2, 0.5, 0.8)
        )
        asym = np.abs(total - total[::-1, ::-1]).sum() / max(np.abs(total).sum(), 1e-12)
        segment = aperture & (flat > 2.0 * noise) & (flat > 0)
        if segment.sum() < 5:
            segment = np.zeros_like(segment)
            segment[np.argsort(-positive)[:5]] = True
        values = flat[segment]
        sorted_values = np.sort(np.abs(values))
        m = len(sorted_values)
        gini = ((2 * np.arange(1, m + 1) - m - 1) * sorted_values).sum() / max(
            sorted_values.mean() * m * (m - 1), 1e-12
        )
        weights = np.maximum(values, 0.0) + 1e-12
        sx, sy = x.ravel()[segment], y.ravel()[segment]
        cx, cy = np.average(sx, weights=weights), np.average(sy, weights=weights)
        r2 = (sx - cx) ** 2 + (sy - cy) ** 2
        brightest = np.argsort(-values)
        cumulative = np.cumsum(values[brightest])
        top = brightest[: max(1, np.searchsorted(cumulative, 0.2 * values.sum()) + 1)]
        m20 = math.log10(
            max((weights[top] * r2[top]).sum(), 1e-12) / max((weights * r2).sum(), 1e-12)
        )
        cov = np.cov(np.stack([sx, sy]), aweights=weights)
        low, high = np.sqrt(np.maximum(np.linalg.eigvalsh(cov), 1e-12))
        colours = [
            -2.5
            * math.log10(
                max(image[..., b].ravel()[aperture].sum(), 1e-6)
                / max(image[..., b + 1].ravel()[aperture].sum(), 1e-6)
            )
            for b in range(bands - 1)
        ]
        out[k] = (
            r20,
            r50,
            r80,
            5 * math.log10(r80 / r20),
            asym,
            gini,
            m20,
            1 - low / high,
            math.hypot(cx, cy),
            positive.max() / flux,
            *colours,
        )
    return out


def robust_standard(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Each array standardised by the training rows' median and MAD-sigma, clipped at +-50."""
    centre = np.median(train, axis=0)
    scale = 1.4826 * np.median(np.abs(train - centre), axis=0) + 1e-6
    return [np.clip((a - centre) / scale, -50, 50) for a in (train, *others)]


def knn_mean(reference, points, k, own=None, exclude_within=0.0):
    """Mean distance of each point to its k nearest references, leaving out the reference that is
    the point itself (``own``: the point's reference row, -1 for none) and, with
    ``exclude_within``, every reference that close to it (its copies)."""
    from sklearn.neighbors import NearestNeighbors

    extra = 12
    neighbours = NearestNeighbors(n_neighbors=min(k + extra, len(reference))).fit(reference)
    distances, found = neighbours.kneighbors(points)
    drop = distances <= exclude_within if exclude_within > 0 else np.zeros(distances.shape, bool)
    if own is not None:
        drop |= found == np.asarray(own)[:, None]
    kept = np.where(drop, np.inf, distances)
    kept = np.sort(kept, axis=1)[:, :k]
    kept = np.where(np.isfinite(kept), kept, np.nanmax(np.where(np.isfinite(kept), kept, 0)))
    return kept.mean(axis=1)


def robust_mahalanobis(train, points):
    """Distance under a robust (MinCovDet) covariance of the training rows."""
    from sklearn.covariance import EmpiricalCovariance, MinCovDet

    try:
        model = MinCovDet(random_state=0).fit(train)
    except (ValueError, np.linalg.LinAlgError):
        model = EmpiricalCovariance().fit(train)
    return np.sqrt(np.maximum(model.mahalanobis(points), 0.0))


def morphology_baselines(train_images, scored_images, same_rows: bool) -> dict[str, np.ndarray]:
    """The external morphology baselines fitted on the training rows, scored on the scored rows:
    isolation forest, 5-NN mean distance (itself left out), robust Mahalanobis distance."""
    from sklearn.ensemble import IsolationForest

    train_params = shape_parameters(train_images)
    scored_params = train_params if same_rows else shape_parameters(scored_images)
    train, scored = robust_standard(train_params, scored_params)
    forest = IsolationForest(n_estimators=200, random_state=0).fit(train)
    own = np.arange(len(scored)) if same_rows else None
    return {
        "morph. isol. forest": -forest.score_samples(scored),
        "morph. 5-NN": knn_mean(train, scored, 5, own),
        "morph. robust Mahalanobis": robust_mahalanobis(train, scored),
    }


# --- the candidates -------------------------------------------------------------------------

TERMS = ("feature", "linear", "extended", "morphology", "residual", "residual_shape")
GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
# The package's default weights (a term they do not name weighs 1, the residual is not a default
# term): the shipped default as a candidate.
DEFAULT_WEIGHTS = dict(DEFAULT_TERM_WEIGHTS)
# ``--rescore`` calibrates every candidate term (the stored terms), the ones the default leaves
# out at weight 0: the default score as shipped, every term's values stored for the candidates.
_STUDY_TERMS = tuple(dict.fromkeys((*DEFAULT_WEIGHTS, *TERMS)))
STUDY_SETTINGS = ScoreSettings(
    terms=_STUDY_TERMS,
    term_weights=tuple((t, DEFAULT_WEIGHTS.get(t, 0.0)) for t in _STUDY_TERMS),
)
COPY_DISTANCE = 0.05  # standardised morphology units: closer than this is a copy
# Fixed weights, times the label-free multipliers, and either with the noise-model terms at 0 where
# the data's health has a finding (the package's default, ``calibrate --noise-terms auto``).
WEIGHTINGS = ("fixed", "label-free", "health", "label-free+health")
SHORT = {t: t[:4] for t in TERMS} | {"residual_shape": "rsha"}  # in the tables
REFERENCE_SIZE = 2000
# How the weighted terms combine: a weighted mean of each term's z (the package's), or of a
# monotone transform of it that lets one term's tail carry an object (an "or" of the terms).
# "softmax" is the package's (``ScoreSettings.combine``, tau log sum w exp(z / tau)): the weighted
# sum of exp(z / tau) ranks the same.
COMBINERS = {
    "mean": lambda z: z,
    "softmax": lambda z: np.exp(np.clip(z, -40.0, 40.0) / SOFTMAX_TEMPERATURE),
    "positive": lambda z: np.maximum(z, 0.0),
    "exp1": lambda z: np.exp(np.clip(z, -20.0, 20.0)),
}
# Choices whose worst AUROC margins are closer than this are not distinct (~200 anomalies per
# family; the bootstrap standard error of the default's AUROC is 0.008-0.015): among them, those
# whose worst AP margins are within NOISE_AP of the best (the AP's standard error is 0.022-0.037)
# are not distinct either, and the best mean AUROC margin decides.
NOISE = 0.01
NOISE_AP = 0.02
MORPH_VARIANTS = (
    "knn5",
    "knn20",
    "knn50",
    "dedup5",
    "dedup20",
    "maha",
    "knn20+maha",
    "dedup20+maha",
)


def robust_z(train: np.ndarray, values: np.ndarray) -> np.ndarray:
    """z of log(values) by the median and MAD-sigma of log(train), as the scorer standardises."""
    logs = np.log(np.maximum(train, 1e-30))
    centre = np.median(logs)
    scale = 1.4826 * np.median(np.abs(logs - centre))
    return (np.log(np.maximum(values, 1e-30)) - centre) / max(scale, 1e-12)


def degeneracy_multiplier(train: np.ndarray) -> float:
    """The label-free weight multiplier of a term from its training distribution alone: 0 when
    log(term) has no spread (MAD ~ 0), otherwise the fraction of distinct values (ties)."""
    logs = np.log(np.maximum(train, 1e-30))
    if 1.4826 * np.median(np.abs(logs - np.median(logs))) < 1e-3:
        return 0.0
    return len(np.unique(train)) / len(train)


def near_copy_fraction(points: np.ndarray) -> float:
    """Fraction of rows with another row within COPY_DISTANCE (copies of each other)."""
    from sklearn.neighbors import NearestNeighbors

    distances, _ = NearestNeighbors(n_neighbors=2).fit(points).kneighbors(points)
    return float((distances[:, 1] <= COPY_DISTANCE).mean())


def family_morphology_baselines(name: str, out: Path, columns, train_columns) -> dict:
    """:func:`morphology_baselines` on a family's scored rows (``columns``), fitted on its
    training rows (``train_columns``; the same rows but for the half family, whose scored half
    is its own file), from the raw flux of each row's object id."""
    same_rows = name != "real_colour_half"
    source = family_set(name, out)
    scored_source = source if same_rows else source.with_name(source.stem + "_score.h5")
    return morphology_baselines(
        images_of(source, train_columns["object_ids"]),
        images_of(scored_source, columns["object_ids"]),
        same_rows,
    )


def morphology_variants(train_params, scored_params, names, same_rows: bool, rng) -> dict:
    """Each morphology-term variant as (z on the scored rows, label-free multiplier), and the
    fraction of training rows with a copy (all parameters): k-NN with
    k = 5/20/50, de-duplicated (references and query copies within COPY_DISTANCE left out), robust
    Mahalanobis and the mean of the two z, on all parameters and without log_flux/log_noise."""
    variants, copies_all = {}, None
    reference_rows = rng.choice(len(train_params), min(REFERENCE_SIZE, len(train_params)), False)
    keep_all = np.ones(len(names), bool)
    keep_shape = np.array([name not in ("log_flux", "log_noise") for name in names])
    for subset, keep in (("all", keep_all), ("shape", keep_shape)):
        train, scored = robust_standard(train_params[:, keep], scored_params[:, keep])
        reference = train[reference_rows]
        position = np.full(len(train), -1)
        position[reference_rows] = np.arange(len(reference_rows))
        own_train = position
        own_scored = position if same_rows else None
        # de-duplicated references: drop one of every pair closer than COPY_DISTANCE
        from sklearn.neighbors import NearestNeighbors

        close = NearestNeighbors(radius=COPY_DISTANCE).fit(reference)
        groups = close.radius_neighbors(reference, return_distance=False)
        unique = np.array([all(j >= i for j in group) for i, group in enumerate(groups)])
        copies = near_copy_fraction(train)
        copies_all = copies if copies_all is None else copies_all
        raw, z, multiplier = {}, {}, {}
        for k in (5, 20, 50):
            for dedup in (False, True):
                if dedup and k == 50:
                    continue
                name = f"{'dedup' if dedup else 'knn'}{k}"
                ref = reference[unique] if dedup else reference
                within = COPY_DISTANCE if dedup else 0.0
                own_t = None if dedup else own_train
                own_s = None if dedup else own_scored
                train_term = knn_mean(ref, train, k, own_t, within)
                raw[name] = knn_mean(ref, scored, k, own_s, within), train_term
                multiplier[name] = degeneracy_multiplier(train_term) * (
                    1.0 if dedup else 1.0 - copies
                )
        maha_train = robust_mahalanobis(reference, train)
        raw["maha"] = robust_mahalanobis(reference, scored), maha_train
        multiplier["maha"] = degeneracy_multiplier(maha_train)
        for name, (values, train_values) in raw.items():
            z[name] = robust_z(train_values, values)
        for a, b in (("knn20", "maha"), ("dedup20", "maha")):
            z[f"{a}+{b}"] = (z[a] + z[b]) / 2
            multiplier[f"{a}+{b}"] = (multiplier[a] + multiplier[b]) / 2
        for name in MORPH_VARIANTS:
            variants[f"{name}/{subset}"] = z[name], multiplier[name]
    return variants, copies_all


def weight_grid() -> np.ndarray:
    """(C, 5) every weighting of TERMS from GRID, normalised to sum 1, without repeats."""
    import itertools

    seen, rows = set(), []
    for weights in itertools.product(GRID, repeat=len(TERMS)):
        total = sum(weights)
        if total == 0:
            continue
        key = tuple(round(w / total, 6) for w in weights)
        if key not in seen:
            seen.add(key)
            rows.append(np.array(weights) / total)
    return np.array(rows)


def ranked_columns(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of every column of ``scores`` (N, C), from one descending sort
    per column (ties broken by order)."""
    order = np.argsort(-scores, axis=0, kind="stable")
    hits = labels[order]
    found = np.cumsum(hits, axis=0)
    n, positives = len(labels), int(labels.sum())
    rank = np.arange(1, n + 1, dtype=np.float64)[:, None]
    ap = np.where(hits, found / rank, 0.0).sum(axis=0) / positives
    below = (n - rank) - (positives - found)  # negatives ranked below each positive
    auroc = np.where(hits, below, 0.0).sum(axis=0) / (positives * (n - positives))
    return auroc, ap


def choose(auroc_margin: np.ndarray, ap_margin: np.ndarray, rows, incumbent=None) -> int:
    """The candidate with the best worst AUROC margin over the families ``rows``; among those
    within NOISE of it, those within NOISE_AP of the best worst AP margin; among those, the best
    mean AUROC margin. ``incumbent``: a candidate kept wherever it is among the tied ones (the
    shipped default changes only for a candidate better beyond the noise; not for the left-out
    choices, as the shipped default was chosen with every family)."""
    floor = auroc_margin[rows].min(axis=0)
    near = floor >= floor.max() - NOISE
    ap_floor = np.where(near, ap_margin[rows].min(axis=0), -np.inf)
    near &= ap_floor >= ap_floor.max() - NOISE_AP
    if incumbent is not None and near[incumbent]:
        return int(incumbent)
    return int(np.argmax(np.where(near, auroc_margin[rows].mean(axis=0), -np.inf)))


class Family:
    """One family's stored terms, labels, baselines and morphology variants."""

    def __init__(self, name: str, out: Path, rng):
        import tensorflow as tf

        from tfanomaly.models.calibration import Calibration
        from tfanomaly.models.morphology import NAMES, feature_names
        from tfanomaly.models.noise_score import NoiseAwareScore
        from tfanomaly.pipelines.evaluate import SCORE_NAMES, metrics
        from tfanomaly.results.catalog import read_results

        folder = out / name
        self.name = name
        columns, _ = read_results(folder / "scores", with_vectors=True)
        same_rows = name != "real_colour_half"
        train_columns = (
            columns if same_rows else read_results(folder / "scores_train", with_vectors=True)[0]
        )
        self.labels = columns["labels"] > 0
        self.kinds = columns["labels"]
        calibration = Calibration.load(folder / "run" / "calibration.npz")
        scorer = NoiseAwareScore(calibration)
        stored_terms = [tf.constant(columns[f"{t}_scores"]) for t in calibration.terms]
        z = scorer.standardised(stored_terms).numpy()
        self.z = {term: z[:, k] for k, term in enumerate(calibration.terms)}
        self.z["residual"] = robust_z(train_columns["residual_scores"], columns["residual_scores"])
        self.multiplier = {
            term: degeneracy_multiplier(train_columns[f"{term}_scores"]) for term in TERMS
        }
        self.default = metrics(self.labels, columns["scores"])
        self.terms = {
            term: metrics(self.labels, columns[f"{term}_scores"])["auroc"] for term in TERMS
        }
        report = json.loads((folder / "scores" / "evaluation.json").read_text())["table"]["all"]
        from tfanomaly.pipelines.evaluate import BASELINES

        self.pixel = {SCORE_NAMES[k]: report[k] for k in BASELINES}
        self.morph_baselines = {
            key: metrics(self.labels, values)
            for key, values in family_morphology_baselines(
                name, out, columns, train_columns
            ).items()
        }
        source = family_set(name, out)
        best = max({**self.pixel, **self.morph_baselines}.items(), key=lambda kv: kv[1]["auroc"])
        self.best_baseline = best
        params, train_params = columns["morphology"], train_columns["morphology"]
        width = params.shape[1]
        with h5py.File(source) as f:
            names = feature_names(f["images"].shape[-1])
        if len(names) != width:  # scored by another version: the first columns are NAMES
            names = tuple(NAMES) + tuple(f"extra_{j}" for j in range(width - len(NAMES)))
        variants, self.copies = morphology_variants(train_params, params, names, same_rows, rng)
        # the package's term is a k-NN without de-duplication: copies count against it too
        stored = self.multiplier["morphology"] * (1.0 - self.copies)
        self.variants = {"stored": (self.z["morphology"], stored), **variants}
        manifest = json.loads((folder / "tfrecords" / "manifest.json").read_text())
        self.noise_finding = noise_model_finding(manifest.get("health"))

    def matrix(self, variant: str, weighting: str) -> np.ndarray:
        """(N, 5) the z of TERMS, the morphology column the variant's, and the weights' multipliers
        (renormalised by the weights later): the label-free ones with ``label-free``, and 0 for
        the noise-model terms with ``health`` where the data's health at ingest has a finding
        (``calibrate --noise-terms auto``, the package's default)."""
        label_free, health = weighting.startswith("label-free"), weighting.endswith("health")
        z_morph, m_morph = self.variants[variant]
        columns = [self.z[t] if t != "morphology" else z_morph for t in TERMS]
        scale = [
            (self.multiplier[t] if t != "morphology" else m_morph) if label_free else 1.0
            for t in TERMS
        ]
        if health and self.noise_finding:
            scale = [
                0.0 if t in NOISE_MODEL_TERMS else m for t, m in zip(TERMS, scale, strict=True)
            ]
        return np.stack(columns, axis=1), np.array(scale)


def images_of(path: Path, object_ids: np.ndarray) -> np.ndarray:
    """The cutouts of ``path`` in the order of ``object_ids``."""
    with h5py.File(path) as f:
        ids, images = f["object_ids"][...], f["images"][...]
    where = {int(i): k for k, i in enumerate(ids)}
    return images[[where[int(i)] for i in object_ids]]


def candidate_metrics(
    family: Family, grid: np.ndarray, variants, combiners, weightings=WEIGHTINGS
) -> np.ndarray:
    """(candidates,) AUROC and AP of every (variant, weighting, weights, combiner) on the family: the
    candidates enumerate combiners x weightings x variants x the grid rows with a
    morphology weight (the rows without one once, under the variant "none")."""
    morph = TERMS.index("morphology")
    without, with_morph = grid[grid[:, morph] == 0], grid[grid[:, morph] > 0]
    found = []
    for combiner in combiners:
        transform = COMBINERS[combiner]
        for weighting in weightings:
            z, scale = family.matrix("stored", weighting)
            weights = without * scale
            weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
            found.append(ranked_columns(family.labels, transform(z) @ weights.T))
            for variant in variants:
                z, scale = family.matrix(variant, weighting)
                weights = with_morph * scale
                weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
                found.append(ranked_columns(family.labels, transform(z) @ weights.T))
    return tuple(np.concatenate([f[k] for f in found]) for k in (0, 1))


def candidate_names(grid: np.ndarray, variants, combiners, weightings=WEIGHTINGS) -> list[tuple]:
    """(variant, weighting, weights, combiner) of each candidate, in candidate_aurocs' order."""
    morph = TERMS.index("morphology")
    without, with_morph = grid[grid[:, morph] == 0], grid[grid[:, morph] > 0]
    names = []
    for combiner in combiners:
        for weighting in weightings:
            names += [("none", weighting, w, combiner) for w in without]
            for variant in variants:
                names += [(variant, weighting, w, combiner) for w in with_morph]
    return names


def candidate_score(family: Family, candidate) -> np.ndarray:
    variant, weighting, weights, combiner = candidate
    z, scale = family.matrix("stored" if variant == "none" else variant, weighting)
    weights = weights * scale
    return COMBINERS[combiner](z) @ (weights / max(weights.sum(), 1e-12))


def describe(candidate) -> str:
    variant, weighting, weights, combiner = candidate
    shown = weights / weights[weights > 0].min()
    text = " ".join(
        f"{SHORT[t]}={w:g}" for t, w in zip(TERMS, np.round(shown, 2), strict=True) if w > 0
    )
    return f"{text}; morph: {variant}; {weighting}; {combiner}"


def fmt(m: dict) -> str:
    return f"{m['auroc']:.3f} / {m['average_precision']:.3f}"


def analyse(out: Path, names, only=None, combiners=("mean",), weightings=WEIGHTINGS) -> None:
    """The tables into ``out/families.md``; ``only``: the morphology variants to choose from
    (``stored``, ``dedup20/shape``, ...; all when None), the tables then into
    ``out/families_only.md``; ``combiners``: how the weighted terms combine (``COMBINERS``)."""
    from tfanomaly.pipelines.evaluate import metrics

    rng = np.random.default_rng(0)
    families = {name: Family(name, out, rng) for name in names}
    grid = weight_grid()
    variants = ["stored"] + [f"{v}/{s}" for s in ("all", "shape") for v in MORPH_VARIANTS]
    if only:
        unknown = set(only) - set(variants)
        if unknown:
            raise SystemExit(f"--variants: unknown {sorted(unknown)}; the variants are {variants}")
        variants = [v for v in variants if v in only]
    candidates = candidate_names(grid, variants, combiners, weightings)
    metrics_of = [
        candidate_metrics(families[n], grid, variants, combiners, weightings) for n in names
    ]
    auroc = np.stack([m[0] for m in metrics_of])
    best = np.array([families[n].best_baseline[1]["auroc"] for n in names])
    best_ap = np.array([families[n].best_baseline[1]["average_precision"] for n in names])
    margin = auroc - best[:, None]
    ap_margin = np.stack([m[1] for m in metrics_of]) - best_ap[:, None]
    del metrics_of
    default_weights = np.array([DEFAULT_WEIGHTS.get(t, 0.0) for t in TERMS])
    default_weights /= default_weights.sum()
    lines = [
        f"{len(candidates)} candidates ({len(grid)} weightings of {', '.join(TERMS)} from "
        f"{GRID}; morphology variants {', '.join(variants)}; weights {', '.join(weightings)}; "
        f"combined by {', '.join(combiners)})",
        "",
        "## Families: leave-one-family-out choice against the baselines",
        "",
        "| family | LOFO default AUROC / AP | best pixel baseline | best morphology baseline "
        "| margin | best stored term | current default AUROC / AP | chosen setting |",
        "|---|---|---|---|---|---|---|---|",
    ]
    worst = None
    for i, name in enumerate(names):
        family = families[name]
        others = [j for j in range(len(names)) if j != i]
        if others:
            choice = choose(margin, ap_margin, others)
        else:
            choice = int(np.argmax(margin[i]))
        found = metrics(family.labels, candidate_score(family, candidates[choice]))
        pixel = max(family.pixel.items(), key=lambda kv: kv[1]["auroc"])
        morph = max(family.morph_baselines.items(), key=lambda kv: kv[1]["auroc"])
        gap = found["auroc"] - best[i]
        term = max(family.terms.items(), key=lambda kv: kv[1])
        lines.append(
            f"| {name} | {fmt(found)} | {fmt(pixel[1])} ({pixel[0]}) | {fmt(morph[1])} "
            f"({morph[0]}) | {gap:+.3f} | {term[1]:.3f} ({term[0]}) | {fmt(family.default)} "
            f"| {describe(candidates[choice])} |"
        )
        if worst is None or gap < worst[1]:
            worst = (name, gap, found, family.default["auroc"] - best[i])
    lines.append(
        f"| worst family | {worst[0]}: {fmt(worst[2])} | | | {worst[1]:+.3f} | | "
        f"current default's margin there {worst[3]:+.3f} | |"
    )
    floor, mean = margin.min(axis=0), margin.mean(axis=0)
    current = [
        k
        for k, c in enumerate(candidates)
        if c[0] == "stored"
        and c[1] == "health"
        and c[3] == ScoreSettings().combine
        and np.allclose(c[2], default_weights)
    ]
    everyone = list(range(len(names)))
    strict = choose(margin, ap_margin, everyone)
    chosen = choose(margin, ap_margin, everyone, current[0] if current else None)
    lofo = []
    for i in range(len(names)):
        others = [j for j in range(len(names)) if j != i]
        if others:
            lofo.append(choose(margin, ap_margin, others))
    kept = ""
    if chosen != strict:
        kept = (
            f" (the package's default, kept: tied within the noise with the best, "
            f"{describe(candidates[strict])}: worst margin {floor[strict]:+.3f}, mean "
            f"{mean[strict]:+.3f}, worst AP margin {ap_margin[:, strict].min():+.3f})"
        )
    lines += [
        "",
        f"All families: the choice is {describe(candidates[chosen])}{kept} (worst margin "
        f"{floor[chosen]:+.3f}, mean {mean[chosen]:+.3f}, worst AP margin "
        f"{ap_margin[:, chosen].min():+.3f}); the leave-one-out choices are "
        f"{len(set(lofo))} distinct setting(s), "
        f"{sum(c == chosen for c in lofo)} of {len(lofo)} the same as the all-family choice.",
    ]
    if current:
        k = current[0]
        lines.append(
            f"The package's default (stored morphology term, its weights) as a candidate: worst "
            f"margin {floor[k]:+.3f}, mean {mean[k]:+.3f}, worst AP margin "
            f"{ap_margin[:, k].min():+.3f}."
        )
    lines += [
        "",
        "## Margins of the all-family choice and of the current default, per family",
        "",
        "| family | best baseline (AUROC) | all-family choice AUROC / AP | margin "
        "| current default AUROC / AP | margin | best candidate on the family itself |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, name in enumerate(names):
        family = families[name]
        found = metrics(family.labels, candidate_score(family, candidates[chosen]))
        lines.append(
            f"| {name} | {family.best_baseline[0]} ({best[i]:.3f}) | {fmt(found)} "
            f"| {found['auroc'] - best[i]:+.3f} | {fmt(family.default)} "
            f"| {family.default['auroc'] - best[i]:+.3f} "
            f"| {auroc[i].max():.3f} ({describe(candidates[int(np.argmax(auroc[i]))])}) |"
        )
    lines += [
        "",
        "## Morphology term variants alone (AUROC; label-free multiplier in brackets)",
        "",
        "| variant | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for variant in variants:
        cells = []
        for name in names:
            z, m = families[name].variants[variant]
            cells.append(f"{metrics(families[name].labels, z)['auroc']:.3f} ({m:.2f})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", "## Stored terms alone (AUROC; label-free multiplier in brackets)", ""]
    lines += ["| term | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for term in TERMS:
        cells = [
            f"{families[n].terms[term]:.3f} ({families[n].multiplier[term]:.2f})" for n in names
        ]
        lines.append(f"| {term} | " + " | ".join(cells) + " |")
    lines += ["", "## Every baseline (AUROC / AP)", ""]
    lines += ["| baseline | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in list(families[names[0]].pixel) + list(families[names[0]].morph_baselines):
        cells = [fmt({**families[n].pixel, **families[n].morph_baselines}[key]) for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    (out / ("families_only.md" if only else "families.md")).write_text(
        common.machine() + "\n\n" + text + "\n"
    )


# --- the runs -------------------------------------------------------------------------------


def run_family(name: str, out: Path, timings: dict, rescore: bool = False, seed: int = 1) -> None:
    """Ingest, train gan, train encoder, score, evaluate, each skipped when its output exists.
    The half family: trained on the first half; the second half ingested alone and scored with
    the first half's run (``scores``), the first half scored too (``scores_train``). ``rescore``:
    calibrate again and score again with the same networks (after the default score changed).
    ``seed``: the networks' training seed."""
    import shutil

    from tfanomaly.data.manifest import MANIFEST
    from tfanomaly.pipelines.calibrate import calibrate
    from tfanomaly.pipelines.config import CalibrateConfig, IngestConfig, ScoreConfig
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
        seed=seed,
    )
    if rescore:
        config = CalibrateConfig(settings=STUDY_SETTINGS)
        timed("calibrate", calibrate, run, data, config, progress=False, echo=common.quiet)
        for results in (folder / "scores", folder / "scores_train"):
            shutil.rmtree(results, ignore_errors=True)
    if name == "real_colour_half":
        if not (folder / "scores_train" / "results.h5").exists():
            train, quiet = folder / "scores_train", common.quiet
            timed("score train", score, run, data, train, ScoreConfig(), progress=False, echo=quiet)
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
    parser.add_argument(
        "--variants",
        default="",
        help="choose among these morphology-term variants only, comma-separated (e.g. the ones "
        "that count copies once: stored,dedup5/all,dedup20/all,...)",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="calibrate and score the finished runs again (same networks), as the default "
        "score now is",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="the networks' training seed (another seed, with --out elsewhere and its sets/ "
        "linked to these: how much a second training moves the figures)",
    )
    parser.add_argument(
        "--fresh-in-choice",
        action="store_true",
        help="analyse the fresh families named in --families with the others, each left out in "
        "turn like them (they are then development families, no longer fresh)",
    )
    parser.add_argument(
        "--combiners",
        default="mean,softmax",
        help=f"how the weighted terms combine, comma-separated, among {', '.join(COMBINERS)}",
    )
    parser.add_argument(
        "--weightings",
        default=",".join(WEIGHTINGS),
        help=f"how the weights are set, comma-separated, among {', '.join(WEIGHTINGS)}",
    )
    args = parser.parse_args()
    combiners = args.combiners.split(",")
    if set(combiners) - set(COMBINERS):
        parser.error(f"--combiners: unknown {sorted(set(combiners) - set(COMBINERS))}")
    print(common.machine(), flush=True)
    out = Path(args.out)
    wanted = args.families.split(",")
    unknown = set(wanted) - set(FAMILIES + FRESH_FAMILIES)
    if unknown:
        parser.error(
            f"--families: unknown {sorted(unknown)}; the families are {FAMILIES + FRESH_FAMILIES}"
        )
    if not args.analyse_only:
        timings_file = out / "timings.json"
        for name in wanted:
            family_set(name, out)
        for name in wanted:
            timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
            run_family(name, out, timings, rescore=args.rescore, seed=args.seed)
            timings_file.write_text(json.dumps(timings, indent=1))
            print(f"{name}: done {timings.get(name)}", flush=True)
    if not args.runs_only:
        only = args.variants.split(",") if args.variants else None
        done = [name for name in wanted if (out / name / "scores").exists()]
        if not args.fresh_in_choice:  # the fresh ones: never in a choice
            done = [name for name in done if name in FAMILIES]
        weightings = args.weightings.split(",")
        if set(weightings) - set(WEIGHTINGS):
            parser.error(f"--weightings: unknown {sorted(set(weightings) - set(WEIGHTINGS))}")
        analyse(out, done, only, combiners, weightings)


if __name__ == "__main__":
    main()
