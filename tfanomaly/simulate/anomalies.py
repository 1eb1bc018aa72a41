"""The injected anomalies: sky kinds drawn into the scene, instrument artefacts laid over it.

``SKY_DRAWERS`` and ``ARTEFACT_DRAWERS`` map each kind's name to its ``(rng, ctx)`` drawer.
"""

from __future__ import annotations

import math

import numpy as np

from tfanomaly.simulate.config import BANDS
from tfanomaly.simulate.galaxies import galaxy, normal
from tfanomaly.simulate.render import EXP_HLR_OVER_R0, LAMBDA_NM, Ctx, band_fluxes


def _merger(rng, ctx: Ctx) -> None:
    """Two overlapping galaxies of comparable brightness (flux ratio 1:1 to 1:3), 1-3 half-light
    radii apart (at least 1.2" so the pair is resolved), sometimes joined by a faint bridge."""
    primary = galaxy(rng, ctx, ctx.x0, ctx.y0, ctx.flux_i, max_hlr=ctx.px(1.3))
    separation = float(
        np.clip(rng.uniform(1.0, 3.0) * primary["hlr"], ctx.px(1.2), 0.32 * ctx.size)
    )
    phi = rng.uniform(0.0, 2 * math.pi)
    x2 = ctx.x0 + separation * math.cos(phi)
    y2 = ctx.y0 + separation * math.sin(phi)
    galaxy(rng, ctx, x2, y2, ctx.flux_i / rng.uniform(1.0, 3.0), max_hlr=ctx.px(1.3))
    if rng.random() < 0.5:
        bridge = band_fluxes(ctx.flux_i * rng.uniform(0.05, 0.1), 0.7, 0.35)
        xm, ym = (ctx.x0 + x2) / 2, (ctx.y0 + y2) / 2
        ctx.scene.add_profile("exp", bridge, xm, ym, separation / 2, 0.75, phi)


def _tidal_feature(rng, ctx: Ctx) -> None:
    """A host galaxy with low-surface-brightness tidal debris: one or two curved tails (an S-shape
    when two), or two to three concentric shells on alternating sides with sharp outer edges.
    The debris peaks at 5-12 sigma of the i-band sky per pixel before the PSF: faint, but clear after the asinh."""
    host = galaxy(rng, ctx, ctx.x0, ctx.y0, ctx.flux_i, max_hlr=ctx.px(1.5))
    g = ctx.scene.grid
    r_max = 0.47 * ctx.size
    base = max(host["hlr"], ctx.px(0.4))
    sb = np.zeros((g.n, g.n))
    dx, dy = g.x - ctx.x0, g.y - ctx.y0
    if rng.random() < 0.6:
        phi0 = rng.uniform(0.0, 2 * math.pi)
        curl = rng.choice([-1.0, 1.0])
        for tail in range(1 if rng.random() < 0.5 else 2):
            t = np.linspace(0.0, 1.0, 96)
            r = base + (min(rng.uniform(3.5, 6.0) * base, r_max) - base) * t
            phi = phi0 + tail * math.pi + curl * rng.uniform(0.8, 1.8) * t
            px, py = r * np.cos(phi), r * np.sin(phi)
            d2 = (dx[..., None] - px) ** 2 + (dy[..., None] - py) ** 2
            nearest = np.argmin(d2, axis=-1)
            width = rng.uniform(1.2, 2.0) * (1.0 + 0.8 * t[nearest])
            amplitude = rng.uniform(6.0, 12.0) * (1.0 - 0.6 * t[nearest])
            sb += amplitude * np.exp(-0.5 * np.min(d2, axis=-1) / width**2)
    else:
        rr = np.hypot(dx, dy)
        phi = np.arctan2(dy, dx)
        side = rng.uniform(0.0, 2 * math.pi)
        radii = np.sort(rng.uniform(1.6, 4.5, size=rng.integers(2, 4))) * base
        for j, radius in enumerate(np.minimum(radii, r_max)):
            opening = rng.uniform(0.8, 1.3)
            taper = np.clip((np.cos(phi - side - j * math.pi) - math.cos(opening)), 0.0, None)
            taper = np.sqrt(taper / (1.0 - math.cos(opening)))
            inner = np.exp(-(radius - rr) / rng.uniform(1.5, 3.0))
            profile = np.where(rr <= radius, inner, np.exp(-0.5 * ((rr - radius) / 0.6) ** 2))
            sb += rng.uniform(5.0, 9.0) * taper * profile
    colour = band_fluxes(1.0, rng.uniform(0.5, 0.9), rng.uniform(0.2, 0.4))
    ctx.scene.add_map(colour[:, None, None] * (ctx.sigma[2] * sb)[None])


def _star_forming_clump(rng, ctx: Ctx) -> None:
    """A disc galaxy with one or two blue, nearly unresolved star-forming knots (HII regions;
    g-r 0-0.2 from the young stars and emission lines) off the centre, each 15-35% of the
    galaxy's i flux, so they stand out most in g."""
    host = galaxy(rng, ctx, ctx.x0, ctx.y0, ctx.flux_i, disky=True, max_hlr=ctx.px(1.5))
    for _ in range(1 if rng.random() < 0.7 else 2):
        radius = float(np.clip(rng.uniform(0.5, 1.5) * host["hlr_disc"], 3.0, 0.35 * ctx.size))
        phi = rng.uniform(0.0, 2 * math.pi)
        flux = band_fluxes(ctx.flux_i * rng.uniform(0.15, 0.35), rng.uniform(0.0, 0.2), 0.0)
        flux[2] *= 10.0 ** (-0.4 * rng.uniform(-0.2, 0.1))  # r-i from Halpha/[OIII]
        xc, yc = ctx.x0 + radius * math.cos(phi), ctx.y0 + radius * math.sin(phi)
        ctx.scene.add_profile("gauss", flux, xc, yc, ctx.px(0.05))


def _lensed_arc(rng, ctx: Ctx) -> None:
    """A red elliptical lens with a blue tangential arc or partial Einstein ring: a small
    exponential source ray-shot through a singular isothermal sphere with external shear,
    theta_E 1-2", then convolved with the PSF like any other sky light."""
    scale = ctx.config.pixel_scale
    lens = band_fluxes(ctx.flux_i, rng.uniform(1.4, 1.8), rng.uniform(0.45, 0.6))
    hlr_lens = ctx.px(rng.uniform(0.5, 1.1))
    ctx.scene.add_profile(
        "dev", lens, ctx.x0, ctx.y0, hlr_lens, rng.uniform(0, 0.3), rng.uniform(0, 3.2)
    )
    theta_e = min(rng.uniform(1.0, 2.0), 0.36 * ctx.size * scale)
    gamma = rng.uniform(0.0, 0.08)
    gamma_angle = rng.uniform(0.0, math.pi)
    source_offset = rng.uniform(0.05, 0.35) * theta_e
    source_phi = rng.uniform(0.0, 2 * math.pi)
    bx0, by0 = source_offset * math.cos(source_phi), source_offset * math.sin(source_phi)
    r0 = rng.uniform(0.08, 0.2) / EXP_HLR_OVER_R0
    q, source_angle = rng.uniform(0.5, 1.0), rng.uniform(0.0, math.pi)
    g = ctx.scene.grid
    # 3x3 sub-pixel rays per pixel: the arc is thinner than a pixel before the PSF.
    sub = (np.arange(3) - 1.0) / 3.0
    tx = ((g.x[..., None, None] + sub[None, :]) - ctx.x0) * scale  # (1, N, 1, 3)
    ty = ((g.y[..., None, None] + sub[:, None]) - ctx.y0) * scale  # (N, 1, 3, 1)
    tr = np.maximum(np.hypot(tx, ty), 1e-6)
    c, s = gamma * math.cos(2 * gamma_angle), gamma * math.sin(2 * gamma_angle)
    bx = tx - theta_e * tx / tr - (c * tx + s * ty) - bx0
    by = ty - theta_e * ty / tr - (s * tx - c * ty) - by0
    ca, sa = math.cos(source_angle), math.sin(source_angle)
    u, v = ca * bx + sa * by, (-sa * bx + ca * by) / q
    sb = np.exp(-np.hypot(u, v) / r0).mean(axis=(-2, -1))
    arc = band_fluxes(
        10.0 ** (-0.4 * (rng.uniform(21.3, 22.5) - ctx.config.zeropoint)),
        rng.uniform(0.0, 0.4),
        rng.uniform(0.0, 0.3),
    )
    ctx.scene.add_map(arc[:, None, None] * (sb / sb.sum())[None])


def _diffraction_spikes(rng, ctx: Ctx) -> None:
    """A bright star (i 13.5-16) in a corner of the cutout or just off it: Moffat core clipped
    flat where the coadd saturated, a broad scattered-light halo, and four diffraction spikes
    (HSC's spider vanes) in a cross, longer and wider in redder bands (diffraction goes as
    wavelength)."""
    normal(rng, ctx)
    half = (ctx.size - 1) / 2
    distance = rng.uniform(0.45, 0.85) * ctx.size
    phi = rng.uniform(0.0, 2 * math.pi)
    xs, ys = half + distance * math.cos(phi), half + distance * math.sin(phi)
    flux = band_fluxes(
        10.0 ** (-0.4 * (rng.uniform(13.5, 16.0) - ctx.config.zeropoint)),
        rng.uniform(0.4, 1.2),
        rng.uniform(0.1, 0.5),
    )
    spike_angle = rng.uniform(0.0, math.pi / 2)
    saturation = rng.uniform(300.0, 1000.0)
    coords = np.arange(ctx.size, dtype=float)
    dx, dy = coords[None, :] - xs, coords[:, None] - ys
    r2 = dx * dx + dy * dy
    beta = ctx.scene.beta
    for b in range(len(BANDS)):
        alpha = ctx.scene.alpha[b]
        core = (beta - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** -beta
        halo_alpha = 3.0 * alpha
        halo = 0.5 / (math.pi * halo_alpha**2) * (1 + r2 / halo_alpha**2) ** -1.5
        stretch = LAMBDA_NM[b] / LAMBDA_NM[2]
        spikes = np.zeros_like(r2)
        for j in range(4):
            ca, sa = (
                math.cos(spike_angle + j * math.pi / 2),
                math.sin(spike_angle + j * math.pi / 2),
            )
            along = dx * ca + dy * sa
            across = -dx * sa + dy * ca
            profile = (1 + np.maximum(along, 0.0) / (4.0 * stretch)) ** -1.6
            spikes += np.where(along > 0, profile, 0.0) * np.exp(
                -0.5 * (across / (0.6 * stretch)) ** 2
            )
        star = flux[b] * (0.94 * core + 0.05 * halo + 0.002 * stretch * spikes)
        ctx.scene.post[b] += np.minimum(star, saturation)
        if ctx.saturated is None:
            ctx.saturated = np.zeros((len(BANDS), ctx.size, ctx.size), bool)
        ctx.saturated[b] |= star >= saturation


def _satellite_trail(rng, ctx: Ctx) -> np.ndarray:
    """A straight streak across the whole cutout in one band only (the bands were exposed at
    different times), about a PSF wide (slightly defocused), through a random point."""
    band = rng.integers(len(BANDS))
    half = (ctx.size - 1) / 2
    xp, yp = half + rng.uniform(-0.3, 0.3) * ctx.size, half + rng.uniform(-0.3, 0.3) * ctx.size
    angle = rng.uniform(0.0, math.pi)
    sigma_px = ctx.scene.fwhm_px[band] * rng.uniform(1.0, 1.3) / 2.3548
    coords = np.arange(ctx.size, dtype=float)
    distance = (coords[None, :] - xp) * math.sin(angle) - (coords[:, None] - yp) * math.cos(angle)
    artefact = np.zeros((len(BANDS), ctx.size, ctx.size))
    peak = rng.uniform(3.0, 12.0) * ctx.sigma[band]
    artefact[band] = peak * np.exp(-0.5 * (distance / sigma_px) ** 2)
    return artefact


def _cosmic_rays(rng, ctx: Ctx) -> np.ndarray:
    """Two to five residual cosmic-ray hits and short tracks, each in one band, sharp (never
    seen through the atmosphere, so not PSF-convolved): one to a few pixels wide, jagged."""
    artefact = np.zeros((len(BANDS), ctx.size, ctx.size))
    for _ in range(rng.integers(2, 6)):
        band = rng.integers(len(BANDS))
        x, y = rng.uniform(0, ctx.size - 1, size=2)
        length = rng.uniform(3.0, 12.0) if rng.random() < 0.6 else rng.uniform(0.0, 1.5)
        angle = rng.uniform(0.0, math.pi)
        t = np.linspace(0.0, 1.0, max(2, int(length * 4)))
        cols = np.rint(x + length * t * math.cos(angle)).astype(int)
        rows = np.rint(y + length * t * math.sin(angle)).astype(int)
        keep = (cols >= 0) & (cols < ctx.size) & (rows >= 0) & (rows < ctx.size)
        pixels = np.unique(rows[keep] * ctx.size + cols[keep])
        values = rng.uniform(15.0, 60.0) * ctx.sigma[band] * rng.uniform(0.5, 1.0, len(pixels))
        artefact[band].flat[pixels] += values
    return artefact


def _bad_column(rng, ctx: Ctx) -> np.ndarray:
    """One to three adjacent columns with a strong offset (hot or cold) in one band, over the
    whole cutout or from a random row to an edge, as a bad CCD column left in a coadd."""
    band = rng.integers(len(BANDS))
    width = int(rng.choice([1, 1, 1, 2, 3]))
    column = int(rng.integers(ctx.size // 8, ctx.size - ctx.size // 8 - width))
    rows = slice(0, ctx.size)
    if rng.random() < 0.5:
        cut = int(rng.integers(ctx.size // 4, 3 * ctx.size // 4))
        rows = slice(cut, ctx.size) if rng.random() < 0.5 else slice(0, cut)
    artefact = np.zeros((len(BANDS), ctx.size, ctx.size))
    sign = 1.0 if rng.random() < 0.75 else -1.0
    artefact[band, rows, column : column + width] = sign * rng.uniform(6.0, 25.0) * ctx.sigma[band]
    return artefact


SKY_DRAWERS = {
    "normal": normal,
    "merger": _merger,
    "tidal_feature": _tidal_feature,
    "star_forming_clump": _star_forming_clump,
    "lensed_arc": _lensed_arc,
    "diffraction_spikes": _diffraction_spikes,
}
ARTEFACT_DRAWERS = {
    "satellite_trail": _satellite_trail,
    "cosmic_rays": _cosmic_rays,
    "bad_column": _bad_column,
}
