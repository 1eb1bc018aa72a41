"""Tests of the galaxies: plain bulge + disc, knots, spiral arms, dust lanes and blends."""

from __future__ import annotations

import numpy as np
import pytest

from tfanomaly.simulate import galaxies, render
from tfanomaly.simulate.config import SurveyConfig, sky_sigma

from .helpers import SUBSTRUCTURE_OFF, dataclass_replace, noise_free, with_only


def test_zero_fractions_draw_a_plain_bulge_and_disc(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a substructure code path ran with its fraction at 0")

    for name in ("_spiral_arms", "_knots", "_dust_lane", "blend"):
        monkeypatch.setattr(galaxies, name, forbidden)
    monkeypatch.setattr(render.Scene, "add_map", forbidden)
    monkeypatch.setattr(render.Scene, "add_gaussians", forbidden)
    config = SurveyConfig(size=32, compact_fraction=0.0, neighbour_fraction=0.0, **SUBSTRUCTURE_OFF)
    grid = render.grid(32, 3.0)
    for seed in range(10):
        scenes = []
        for sub in (None, np.random.default_rng(seed)):  # the stream exists, the fractions are 0
            scene = render.Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0)
            ctx = render.Ctx(config, scene, sky_sigma(config), 15.5, 15.5, 1000.0, sub=sub)
            galaxy = galaxies.galaxy(np.random.default_rng(seed), ctx, 15.5, 15.5, 1000.0)
            scenes.append(scene)
        assert galaxy["arms"] is None and galaxy["lane"] is None and "knots" not in galaxy
        np.testing.assert_array_equal(scenes[0].render(), scenes[1].render())


def scene_flux(scene):
    """Total pre-PSF flux per band of a scene: its transform at k = 0 plus its pixel maps."""
    maps = 0.0 if scene.maps is None else scene.maps.sum(axis=(1, 2))
    return scene.kspace[:, 0, 0].real + maps


@pytest.mark.parametrize("name", ["knot_fraction", "spiral_fraction", "dust_fraction"])
def test_substructure_moves_disc_light(name):
    grid = render.grid(32, 3.0)
    changed = 0
    for seed in range(30):
        scenes = []
        for value in (0.0, 1.0):
            config = SurveyConfig(size=32, **SUBSTRUCTURE_OFF | {name: value})
            scene = render.Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0)
            ctx = render.Ctx(config, scene, sky_sigma(config), 15.5, 15.5, 1000.0)
            ctx.sub = np.random.default_rng(seed)
            galaxies.galaxy(np.random.default_rng(seed), ctx, 15.5, 15.5, 1000.0)
            scenes.append(scene)
        smooth, structured = scenes
        if structured.maps is None and np.array_equal(structured.kspace, smooth.kspace):
            continue
        changed += 1
        if name == "dust_fraction":  # absorbs light, most in g, and keeps the drawn i flux
            ratio = scene_flux(structured) / scene_flux(smooth)
            assert ratio[0] < ratio[1] < ratio[2] and abs(ratio[2] - 1.0) < 1e-9
        else:  # moves light from the smooth disc into knots or arms, adds none
            np.testing.assert_allclose(scene_flux(structured), scene_flux(smooth), rtol=1e-9)
    assert changed >= (3 if name == "dust_fraction" else 10)


@pytest.mark.parametrize("name", ["knot_fraction", "spiral_fraction"])
def test_knots_and_arms_change_the_cutouts_not_their_flux(name):
    smooth = noise_free(with_only(name, 0.0, compact_fraction=0.0), 24)
    structured = noise_free(with_only(name, 1.0, compact_fraction=0.0), 24)
    changed = np.abs(structured - smooth).max(axis=(1, 2, 3)) > 1e-3 * smooth.max(axis=(1, 2, 3))
    # Extended discs (bulge-to-total < 0.6) get it; bulge-dominated galaxies stay smooth.
    assert 8 <= changed.sum() <= 20
    ratio = structured[changed].sum(axis=(1, 2)) / smooth[changed].sum(axis=(1, 2))
    # Only the light that moves across the stamp's edge changes the sum (a few % at most).
    assert np.all(np.abs(np.median(ratio, axis=0) - 1) < 0.01) and np.all(np.abs(ratio - 1) < 0.06)
    # Visibly moved: at least a few percent of the galaxy's peak somewhere.
    moved = np.abs(structured - smooth)[changed].max(axis=(1, 2, 3))
    assert np.median(moved / smooth[changed].max(axis=(1, 2, 3))) > 0.02


def test_knots_are_blue_many_and_far_below_a_star_forming_clump():
    config = SurveyConfig(size=32, knot_fraction=1.0)
    grid = render.grid(32, 3.0)
    counts, shares = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        scene = render.Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0)
        ctx = render.Ctx(config, scene, sky_sigma(config), 15.5, 15.5, 1000.0, sub=rng)
        g_r, r_i = rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.4)
        disc = galaxies._Disc(
            15.5, 15.5, ctx.px(1.0), 0.3, 0.5, render.band_fluxes(700.0, g_r, r_i), g_r, r_i
        )
        galaxy_flux = disc.total + render.band_fluxes(300.0, 1.2, 0.5)
        knots = galaxies._knots(rng, ctx, disc, galaxy_flux, None)
        counts.append(knots.shape[1])
        shares.append(knots[2].sum() / disc.total[2])
        assert np.all(knots <= 0.06 * galaxy_flux[:, None] + 1e-9)  # each <= 6% of the galaxy
        assert np.all(knots[0] / knots[1] > disc.total[0] / disc.total[1])  # bluer in g-r
        np.testing.assert_allclose(disc.flux + knots.sum(axis=1), disc.total)  # taken from disc
    assert min(counts) >= 5 and max(counts) <= 40 and max(counts) >= 25
    assert 0.02 < min(shares) and max(shares) <= 0.30 and np.median(shares) > 0.08


def test_a_dusty_disc_keeps_its_i_flux_and_loses_g():
    # The survey selects on observed i: the lane reddens the disc but keeps its drawn i flux.
    grid = render.grid(32, 3.0)
    for hlr, e, lane in (
        (3.0, 0.55, galaxies._Lane(1.5, 0.5, 0.3)),
        (8.0, 0.7, galaxies._Lane(0.5, 2.0, -1.0)),
    ):
        fluxes = []
        for tau in (0.0, lane.tau_r):
            scene = render.Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0)
            disc = galaxies._Disc(15.5, 15.5, hlr, e, 0.7, np.array([50.0, 80.0, 100.0]), 0.5, 0.25)
            galaxies._add_disc(scene, disc, None, dataclass_replace(lane, tau_r=tau))
            fluxes.append(scene_flux(scene))
        ratio = fluxes[1] / fluxes[0]
        assert abs(ratio[2] - 1.0) < 1e-9 and ratio[0] < ratio[1] < 1.0
        # tau_g : tau_r : tau_i = 1.3 : 1 : 0.75, so g loses more than r relative to i.
        assert 1 - ratio[0] > 1.2 * (1 - ratio[1]) > 0.005
        # The light is taken out along the major axis (angle 0.7), on the lane's offset line.
        row, col = np.unravel_index(np.argmin(scene.maps[1]), scene.maps[1].shape)
        dx, dy = col - grid.pad - 15.5, row - grid.pad - 15.5
        assert abs(-np.sin(0.7) * dx + np.cos(0.7) * dy - lane.offset) < 1.0


def test_dust_lanes_redden_inclined_discs():
    clean = noise_free(with_only("dust_fraction", 0.0, compact_fraction=0.0), 40)
    dusty = noise_free(with_only("dust_fraction", 1.0, compact_fraction=0.0), 40)
    changed = np.abs(dusty - clean).max(axis=(1, 2, 3)) > 1e-3 * clean.max(axis=(1, 2, 3))
    assert 4 <= changed.sum() <= 20  # only inclined (e > 0.5) disc galaxies
    ratio = dusty[changed].sum(axis=(1, 2)) / clean[changed].sum(axis=(1, 2))  # (n, bands)
    assert np.all(ratio[:, 0] < ratio[:, 1]) and np.all(ratio[:, 1] < ratio[:, 2])
    assert np.all(ratio[:, 2] - ratio[:, 0] > 0.02)  # g dimmed more than i
    assert np.all(np.abs(ratio[:, 2] - 1.0) < 0.05)  # the drawn i magnitude is kept


def test_blends_add_a_fainter_galaxy_at_the_expected_distance():
    size = 32
    alone = noise_free(with_only("blend_fraction", 0.0, neighbour_fraction=0.0), 20)
    blended = noise_free(with_only("blend_fraction", 1.0, neighbour_fraction=0.0), 20)
    companion = (blended - alone)[..., 2]  # the main stream is untouched: only the blend differs
    centre = (size - 1) / 2
    for target, other in zip(alone[..., 2], companion, strict=True):
        row, col = np.unravel_index(np.argmax(other), other.shape)
        distance = np.hypot(row - centre, col - centre)
        # 0.33-0.48 of the side from the target (itself within 0.7 px of the centre), or at the
        # stamp's edge when its centre is just off it.
        assert 0.33 * size - 2 <= distance <= 0.48 * size + 2
        assert other.sum() < 10 ** (-0.4 * 1.25) * target.sum() * 1.01  # >= 1.25 mag fainter
        assert other.max() < target.max()
