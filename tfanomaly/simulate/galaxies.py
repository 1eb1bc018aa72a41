"""The simulated galaxies: bulge + disc profiles, their knots, spiral arms and dust lanes.

Also the faint neighbours and the blended galaxies laid around a cutout's target.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from tfanomaly.simulate.config import BANDS
from tfanomaly.simulate.render import EXP_HLR_OVER_R0, Ctx, Grid, Scene, band_fluxes, shear_matrix


def galaxy(rng, ctx: Ctx, x, y, flux_i, compact=False, disky=False, max_hlr=None) -> dict:
    """A bulge (de Vaucouleurs) + disc (exponential) galaxy; returns its sizes in pixels.

    Its shape and colours come from ``rng``. With substructure on (``ctx.sub``), an extended
    disc galaxy (not compact, bulge-to-total < 0.6) then gets, from the substructure stream and
    each with its config fraction: spiral arms (``_spiral_arms``), star-forming knots
    (``_knots``) and, when inclined (e > 0.5), a dust lane (``_dust_lane``). Arms and knots
    move disc light, they add none. Anomaly hosts are drawn here too, so that smoothness
    never tells a normal galaxy from a host.
    """
    bulge_to_total = rng.beta(0.9, 1.3) * (0.3 if disky else 1.0)
    if compact:
        hlr_disc = ctx.px(math.exp(rng.uniform(math.log(0.1), math.log(0.3))))
        hlr_bulge = hlr_disc * rng.uniform(0.6, 1.0)
        e_disc = rng.uniform(0.0, 0.3)
    else:
        hlr_disc = ctx.px(float(np.clip(math.exp(rng.normal(0.0, 0.35)), 0.5, 2.5)))
        if max_hlr is not None:
            hlr_disc = min(hlr_disc, max_hlr)
        hlr_bulge = hlr_disc * rng.uniform(0.3, 0.6)
        e_disc = rng.uniform(0.0, 0.7)
    e_bulge = rng.uniform(0.0, 0.3)
    angle = rng.uniform(0.0, math.pi)
    bulge = band_fluxes(bulge_to_total * flux_i, rng.uniform(1.0, 1.5), rng.uniform(0.4, 0.6))
    g_r, r_i = rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.4)
    disc_flux = band_fluxes((1 - bulge_to_total) * flux_i, g_r, r_i)
    disc = _Disc(x, y, hlr_disc, e_disc, angle, disc_flux, g_r, r_i)
    ctx.scene.add_profile("dev", bulge, x, y, hlr_bulge, e_bulge, angle)
    galaxy = {
        "hlr": bulge_to_total * hlr_bulge + (1 - bulge_to_total) * hlr_disc,
        "hlr_disc": hlr_disc,
        "angle": angle,
        "e": e_disc,
    }
    arms = lane = None
    if ctx.sub is not None:
        config = ctx.config
        draws = ctx.sub.random(3)
        extended = not compact and bulge_to_total < 0.6
        if extended and draws[0] < config.spiral_fraction:
            arms = _spiral_arms(ctx.sub, disc)
        if extended and draws[1] < config.knot_fraction:
            galaxy["knots"] = _knots(ctx.sub, ctx, disc, bulge + disc.total, arms)
        if extended and e_disc > 0.5 and draws[2] < config.dust_fraction:
            lane = _dust_lane(ctx.sub, disc)
        galaxy |= {"arms": arms, "lane": lane}
    _add_disc(ctx.scene, disc, arms, lane)
    return galaxy


def normal(rng, ctx: Ctx) -> None:
    """One bulge + disc galaxy (``galaxy``), nearly unresolved for ``compact_fraction`` of them."""
    compact = rng.random() < ctx.config.compact_fraction
    galaxy(rng, ctx, ctx.x0, ctx.y0, ctx.flux_i, compact=compact)


# --------------------------------------------------------------------------------------------
# The discs' substructure. Real discs are not smooth: a pixel-space baseline that learns smooth
# profiles as "normal" finds every star-forming spiral odd. All of it is drawn in the disc's
# own face-on frame and projected like the disc: a face-on point p lands at the stamp offset
# S p, S the disc's shear.


@dataclass
class _Disc:
    """An exponential disc at stamp pixel (x, y); ``flux`` is the light left in its smooth part."""

    x: float
    y: float
    hlr: float  # pixels
    e: float
    angle: float
    flux: np.ndarray  # (bands,)
    g_r: float
    r_i: float
    total: np.ndarray = dataclasses.field(init=False)  # the whole disc's light

    def __post_init__(self) -> None:
        self.total = self.flux.copy()

    @property
    def r0(self) -> float:
        return self.hlr / EXP_HLR_OVER_R0

    def frame(self, grid: Grid, oversample: int = 1):
        """Offsets (dx, dy) of the padded grid's pixels from the centre, and the same points in
        the face-on frame (u, v); oversample > 1 adds two axes of sub-pixel points."""
        if oversample == 1:
            dx, dy = grid.x - self.x, grid.y - self.y
        else:
            offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
            dx = grid.x[..., None, None] + offsets[None, :] - self.x  # (1, N, 1, s)
            dy = grid.y[..., None, None] + offsets[:, None] - self.y  # (N, 1, s, 1)
        inverse = shear_matrix(self.e, self.angle + math.pi / 2)  # S^-1: the opposite shear
        u = inverse[0, 0] * dx + inverse[0, 1] * dy
        v = inverse[1, 0] * dx + inverse[1, 1] * dy
        return dx, dy, u, v

    def exponential(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.exp(-np.sqrt(u * u + v * v) / self.r0)


@dataclass
class _Arms:
    """m logarithmic spiral arms: ridges at theta = phase + winding ln(r / r0) + 2 pi j / m."""

    m: int
    winding: float  # +-1 / tan(pitch angle)
    phase: float
    sharpness: float
    r_in: float  # pixels; the arms fade in over ~r_in, out of the bulge
    flux: np.ndarray

    def pattern(self, disc: _Disc, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unnormalised face-on surface brightness of the arms at (u, v)."""
        r2 = u * u + v * v
        log_r = 0.5 * np.log(np.maximum(r2, 1e-6) / disc.r0**2)
        psi = np.arctan2(v, u) - self.phase - self.winding * log_r
        envelope = np.exp(-np.sqrt(r2) / disc.r0) * -np.expm1(-r2 / self.r_in**2)
        return envelope * (0.5 + 0.5 * np.cos(self.m * psi)) ** self.sharpness


def _spiral_arms(rng, disc: _Disc) -> _Arms:
    """Two (a quarter of the time three) logarithmic spiral arms, pitch angle 10-30 deg, winding
    either way, that take 20-50% of the disc's i light and are slightly bluer than it (g-r
    0.05-0.2, r-i 0-0.1 mag). The pattern ((1 + cos m psi) / 2)^w (w 2-5, psi the angle from
    an arm) lies on the disc's exponential, faded in over 0.5-1 scale lengths out of the bulge.
    """
    arms = _Arms(
        m=2 if rng.random() < 0.75 else 3,
        winding=rng.choice([-1.0, 1.0]) / math.tan(math.radians(rng.uniform(10.0, 30.0))),
        phase=rng.uniform(0.0, 2 * math.pi),
        sharpness=rng.uniform(2.0, 5.0),
        r_in=disc.r0 * rng.uniform(0.5, 1.0),
        flux=band_fluxes(
            rng.uniform(0.2, 0.5) * disc.total[2],
            disc.g_r - rng.uniform(0.05, 0.2),
            disc.r_i - rng.uniform(0.0, 0.1),
        ),
    )
    disc.flux = disc.flux - arms.flux
    return arms


def _knots(rng, ctx: Ctx, disc: _Disc, galaxy_flux: np.ndarray, arms: _Arms | None) -> np.ndarray:
    """5-40 star-forming knots (HII regions, like GalSim's RandomKnots): nearly unresolved
    Gaussians (sigma 0.05-0.15") at radii drawn from the disc's light (r = r0 Gamma(2, 1)),
    60% of them on the arms when there are arms. Together they take 5-30% of the disc's i light
    (log-normal shares); each is bluer than the disc (g-r 0.1-0.45, r-i 0-0.25) and at most 6% of
    the galaxy's flux in every band, well below a ``star_forming_clump`` (15-35%). Returns the
    fluxes (bands, n) of those on the padded grid (the others' light stays in the disc)."""
    n = int(rng.integers(5, 41))
    share = rng.uniform(0.05, 0.30)
    weights = rng.lognormal(0.0, 0.8, n)
    g_r = rng.uniform(0.1, min(0.45, disc.g_r - 0.1), n)
    r_i = rng.uniform(0.0, min(0.25, disc.r_i - 0.05), n)
    sigma = ctx.px(rng.uniform(0.05, 0.15, n))
    r = disc.r0 * rng.gamma(2.0, 1.0, n)
    theta = rng.uniform(0.0, 2 * math.pi, n)
    on_arm = rng.random(n) < 0.6
    arm = rng.integers(0, 6, n)  # 6: a whole number of turns for 2 or 3 arms
    scatter = rng.normal(0.0, 0.15, n)
    if arms is not None:
        ridge = arms.phase + arms.winding * np.log(r / disc.r0) + 2 * math.pi * arm / arms.m
        theta = np.where(on_arm, ridge + scatter, theta)
    shear = shear_matrix(disc.e, disc.angle)
    u, v = r * np.cos(theta), r * np.sin(theta)
    x = disc.x + shear[0, 0] * u + shear[0, 1] * v
    y = disc.y + shear[1, 0] * u + shear[1, 1] * v
    flux = band_fluxes(share * disc.total[2] * weights / weights.sum(), g_r, r_i)  # (bands, n)
    flux *= np.minimum(1.0, np.min(0.06 * galaxy_flux[:, None] / flux, axis=0))
    # Knots near the edge of the padded grid would wrap around onto the far side of the stamp.
    g = ctx.scene.grid
    low, high = -g.pad / 2, g.size - 1 + g.pad / 2
    keep = (x > low) & (x < high) & (y > low) & (y < high)
    if not keep.any():
        return flux[:, keep]
    flux = flux[:, keep]
    # Knots much bluer than a red disc could outshine its g light: keep 30% of it smooth.
    flux *= min(1.0, float(np.min(0.7 * disc.flux / flux.sum(axis=1))))
    disc.flux = disc.flux - flux.sum(axis=1)
    ctx.scene.add_gaussians(flux, x[keep], y[keep], sigma[keep])
    return flux


# Optical depth of dust in g, r, i relative to r (Milky-Way-like, A_lambda roughly ~ 1 / lambda).
_DUST_TAU_OVER_R = np.array([1.3, 1.0, 0.75])


@dataclass(frozen=True)
class _Lane:
    """A dust lane along the disc's major axis: optical depth in r, Gaussian width and offset
    across the lane (pixels)."""

    tau_r: float
    width: float
    offset: float


def _dust_lane(rng, disc: _Disc) -> _Lane:
    """A dust lane for an inclined disc: central optical depth tau_r 0.5-1.5 (g : r : i =
    1.3 : 1 : 0.75), a Gaussian 0.1-0.25 disc half-light radii wide across (at least half a
    pixel), 0.03-0.12 half-light radii off the centre to either side, fading along the major
    axis over two disc scale lengths."""
    return _Lane(
        tau_r=rng.uniform(0.5, 1.5),
        width=max(0.5, rng.uniform(0.1, 0.25) * disc.hlr),
        offset=rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.12) * disc.hlr,
    )


def _add_disc(scene: Scene, disc: _Disc, arms: _Arms | None, lane: _Lane | None) -> None:
    """Add the smooth disc (the analytic exponential), its arms (a pre-PSF map) and its dust lane.

    The dusty disc is the disc times the transmission exp(-tau_band), drawn as the disc minus
    the light the lane absorbs: a pre-PSF map over the pixels near the lane only, 3x3 points per
    pixel (the lane can be narrower than a pixel). It keeps its drawn i flux (the survey selects
    on observed i magnitudes), so the lane reddens it: g loses most.
    """
    if arms is None and lane is None:
        scene.add_profile("exp", disc.flux, disc.x, disc.y, disc.hlr, disc.e, disc.angle)
        return
    g = scene.grid
    maps = np.zeros((len(BANDS), g.n, g.n))
    arms_total = 1.0
    if arms is not None:
        pattern = arms.pattern(disc, *disc.frame(g)[2:])
        arms_total = pattern.sum()
        maps += arms.flux[:, None, None] * (pattern / arms_total)[None]
    scale = 1.0
    if lane is not None:
        ca, sa = math.cos(disc.angle), math.sin(disc.angle)
        across = -sa * (g.x - disc.x) + ca * (g.y - disc.y)
        rows, cols = np.nonzero(np.abs(across - lane.offset) < 5.0 * lane.width + 1.0)
        offsets = (np.arange(3) + 0.5) / 3 - 0.5
        dx = (cols - g.pad)[:, None, None] + offsets[None, None, :] - disc.x  # (pixels, 1, 3)
        dy = (rows - g.pad)[:, None, None] + offsets[None, :, None] - disc.y  # (pixels, 3, 1)
        inverse = shear_matrix(disc.e, disc.angle + math.pi / 2)
        u = inverse[0, 0] * dx + inverse[0, 1] * dy
        v = inverse[1, 0] * dx + inverse[1, 1] * dy
        # Surface brightness per pixel area: the analytic disc's, and the arms' as in ``maps``.
        light = disc.flux[:, None, None, None] * disc.exponential(u, v)[None]
        light /= 2 * math.pi * disc.r0**2
        if arms is not None:
            light += arms.flux[:, None, None, None] * (arms.pattern(disc, u, v) / arms_total)[None]
        r0_major = disc.r0 * math.sqrt((1 + disc.e) / (1 - disc.e))
        tau_r = (
            lane.tau_r
            * np.exp(-0.5 * ((-sa * dx + ca * dy - lane.offset) / lane.width) ** 2)
            * np.exp(-np.abs(ca * dx + sa * dy) / (2.0 * r0_major))
        )
        absorbed = (light * -np.expm1(-_DUST_TAU_OVER_R[:, None, None, None] * tau_r)).mean(
            (-2, -1)
        )
        maps[:, rows, cols] -= absorbed
        total_i = disc.flux[2] + (0.0 if arms is None else arms.flux[2])
        scale = total_i / (total_i - absorbed[2].sum())
    scene.add_profile("exp", scale * disc.flux, disc.x, disc.y, disc.hlr, disc.e, disc.angle)
    scene.add_map(scale * maps)


def neighbours(rng, ctx: Ctx) -> None:
    """One or two faint (21.5-25 mag) galaxies or stars anywhere around, partly off the stamp."""
    g = ctx.scene.grid
    half = (ctx.size - 1) / 2
    for _ in range(rng.integers(1, 3)):
        for _attempt in range(8):
            x, y = rng.uniform(-g.pad / 2, ctx.size + g.pad / 2, size=2)
            if math.hypot(x - half, y - half) > 0.2 * ctx.size:
                break
        flux_i = 10.0 ** (-0.4 * (rng.uniform(21.5, 25.0) - ctx.config.zeropoint))
        if rng.random() < 0.3:
            flux = band_fluxes(flux_i, rng.uniform(0.3, 1.4), rng.uniform(0.1, 0.6))
            ctx.scene.add_profile("point", flux, x, y)
        else:
            flux = band_fluxes(flux_i, rng.uniform(0.3, 1.6), rng.uniform(0.1, 0.7))
            hlr = ctx.px(math.exp(rng.uniform(math.log(0.2), math.log(0.8))))
            ctx.scene.add_profile("exp", flux, x, y, hlr, rng.uniform(0, 0.6), rng.uniform(0, 3.2))


def blend(rng, ctx: Ctx, separation: float, phi: float, fainter: float) -> None:
    """A second, unrelated galaxy (``galaxy``, substructure and all) ``fainter`` (1.25-3) i mag
    below the target and ``separation`` (0.33-0.48) of the cutout side away from it: it overlaps
    the target only in the wings. A ``merger`` companion is brighter (at most 1.2 mag fainter)
    and closer (within 0.32 of the side)."""
    x = ctx.x0 + separation * ctx.size * math.cos(phi)
    y = ctx.y0 + separation * ctx.size * math.sin(phi)
    compact = rng.random() < ctx.config.compact_fraction
    flux_i = ctx.flux_i * 10.0 ** (-0.4 * fainter)
    galaxy(rng, ctx, x, y, flux_i, compact=compact, max_hlr=ctx.px(1.5))
