"""Checks that a trained network learned something, run at the end of every training stage before
its network is written: a collapsed network stops the stage with an error naming the cause.
"""

from __future__ import annotations

import numpy as np

from tfanomaly.errors import TfanomalyError

# A network whose outputs vary across inputs by less than this fraction of the inputs' own
# variation puts out (nearly) one image whatever it is given.
SPREAD_FLOOR = 0.05
# A generator's samples and a reconstruction's spread are compared with the real images' spread;
# a GAN or encoder early in training is blurred, not constant, so its floor is lower.
SAMPLE_SPREAD_FLOOR = 0.02


class NetworkCollapsedError(TfanomalyError):
    """A trained network puts out a constant or does no better than a trivial predictor; its
    checkpoints are kept, its network file is not written."""


def spread(images: np.ndarray) -> float:
    """Mean over pixels of the standard deviation across images (N, ...): how much a set of
    images varies from one to the next (0 for N copies of one image)."""
    images = np.asarray(images, dtype=np.float64)
    return float(images.reshape(len(images), -1).std(axis=0).mean())


def check_reconstruction(
    name: str, targets: np.ndarray, outputs: np.ndarray, *, advice: str = "", enforce: bool = True
) -> dict:
    """Compare a reconstruction ``outputs`` of ``targets`` (both (N, ...), N >= 2) with the mean
    image of the targets; return the figures and raise NetworkCollapsedError when the outputs are
    (nearly) constant or no closer to the targets than the mean image is.

    Returns:
        ``{"mse", "mean_image_mse", "ratio", "output_spread", "target_spread"}``; ``ratio`` is
        the reconstruction's MSE over the mean image's (below 1: it learned something). With
        ``enforce=False`` the figures come back and nothing is raised.
    """
    targets = np.asarray(targets, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    mse = float(np.mean((outputs - targets) ** 2))
    mean_mse = float(np.mean((targets - targets.mean(axis=0)) ** 2))
    figures = {
        "mse": mse,
        "mean_image_mse": mean_mse,
        "ratio": mse / max(mean_mse, 1e-30),
        "output_spread": spread(outputs),
        "target_spread": spread(targets),
    }
    tail = f"; {advice}" if advice else ""
    if not enforce:
        return figures
    if not np.isfinite(outputs).all():
        raise NetworkCollapsedError(f"{name}: the trained network puts out NaN/inf{tail}")
    if figures["output_spread"] < SPREAD_FLOOR * figures["target_spread"]:
        raise NetworkCollapsedError(
            f"{name}: the network has collapsed to a constant output (its outputs vary by "
            f"{figures['output_spread']:.3g} across images, its inputs by "
            f"{figures['target_spread']:.3g}); reconstruction MSE {mse:.4g} against "
            f"{mean_mse:.4g} for the mean image{tail}"
        )
    if mse >= mean_mse:
        raise NetworkCollapsedError(
            f"{name}: the network reconstructs its images no better than their mean image does "
            f"(MSE {mse:.4g} against {mean_mse:.4g}){tail}"
        )
    return figures


def check_samples(
    name: str,
    samples: np.ndarray,
    reals: np.ndarray,
    *,
    what: str = "samples",
    advice: str = "",
    enforce: bool = True,
) -> dict:
    """Raise NetworkCollapsedError when ``samples`` (a generator's images for different z, or
    reconstructions of different images) vary across the set by less than ``SAMPLE_SPREAD_FLOOR``
    of the spread of the real images: every input gives (nearly) the same image (mode collapse).
    Returns ``{"sample_spread", "real_spread", "ratio"}``."""
    samples = np.asarray(samples)
    figures = {"sample_spread": spread(samples), "real_spread": spread(reals)}
    figures["ratio"] = figures["sample_spread"] / max(figures["real_spread"], 1e-30)
    tail = f"; {advice}" if advice else ""
    if not enforce:
        return figures
    if not np.isfinite(samples).all():
        raise NetworkCollapsedError(f"{name}: the trained network puts out NaN/inf{tail}")
    if figures["ratio"] < SAMPLE_SPREAD_FLOOR:
        raise NetworkCollapsedError(
            f"{name}: the network has collapsed: its {what} are (nearly) one image (they vary "
            f"by {figures['sample_spread']:.3g} across the set, the real images by "
            f"{figures['real_spread']:.3g}){tail}"
        )
    return figures
