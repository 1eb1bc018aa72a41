"""The feature spaces objects are compared in: stored per-object vectors of a results file, alone or
side by side, standardised so that every block weighs alike. One home for the space that the
characterisation's map and clusters, "more like this" and the re-ranking share.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfanomaly.errors import ConfigError, InputError

# The stored vectors (results.catalog.VECTOR_KEYS) a space is made of.
SPACES: dict[str, tuple[str, ...]] = {
    "residual_shape+morphology": ("residual_shape", "morphology"),
    "residual_shape": ("residual_shape",),
    "residual_shape+latents": ("residual_shape", "latents"),
    "morphology": ("morphology",),
    "latents": ("latents",),
    "feature_axes": ("feature_axes",),
}
# Chosen with each data family left out in turn (docs: characterisation results): the same kind
# among an anomaly's nearest anomalies and "more like this" precision, at its worst family.
DEFAULT_SPACE = "residual_shape+morphology"
CLIP = 8.0  # standardised values are clipped here: one extreme object does not set the scale


def check_space(name: str) -> tuple[str, ...]:
    """The vector keys of the space ``name`` (ConfigError naming the spaces for another name)."""
    if name not in SPACES:
        raise ConfigError(f"unknown feature space '{name}'; choose one of {', '.join(SPACES)}")
    return SPACES[name]


def standardised_block(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float32: each column to zero mean and unit variance (constant columns to 0), clipped
    at +-CLIP, then scaled by 1/sqrt(D) so that the block's total variance is about 1."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or not np.isfinite(vectors).all():
        raise InputError(f"feature vectors must be a finite (N, D) array, got {vectors.shape}")
    std = vectors.std(axis=0)
    unit = (vectors - vectors.mean(axis=0)) / np.where(std > 0, std, np.inf)
    return (np.clip(unit, -CLIP, CLIP) / np.sqrt(vectors.shape[1])).astype(np.float32)


def space_vectors(read: Callable[[str], np.ndarray], name: str) -> np.ndarray:
    """(N, sum of D) float32 vectors of the space ``name``: each of its stored blocks, read with
    ``read(key)``, through :func:`standardised_block`, side by side."""
    return np.concatenate([standardised_block(read(key)) for key in check_space(name)], axis=1)


def available_spaces(keys) -> list[str]:
    """The spaces whose every block is among the stored vector ``keys``."""
    keys = set(keys)
    return [name for name, blocks in SPACES.items() if set(blocks) <= keys]


def choose_space(requested: str | None, keys, where, option: str) -> tuple[str, bool]:
    """The space to compare objects in, given the vector ``keys`` a results file stores:
    ``requested``, or with None the default, or (a file scored before the default's vectors
    existed) the first space the file has. Returns ``(space, fell_back)``.

    Raises:
        InputError: naming ``where`` (the file) and ``option`` (how to choose another space) when
            the space's vectors are missing.
    """
    have = available_spaces(keys)
    space = requested or DEFAULT_SPACE
    fell_back = requested is None and space not in have and bool(have)
    if fell_back:
        space = have[0]
    missing = [key for key in check_space(space) if key not in set(keys)]
    if missing:
        raise InputError(
            f"{where}: no '{', '.join(missing)}' vectors for the space '{space}' (spaces it has: "
            f"{', '.join(have) or 'none'}); score again with this tfanomaly version or choose "
            f"another {option}"
        )
    return space, fell_back
