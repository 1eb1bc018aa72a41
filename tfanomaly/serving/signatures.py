"""The names of an export's signatures (no TensorFlow import: the CLI and Beam's launcher read
them before any graph is loaded)."""

from __future__ import annotations

SIGNATURES = ("serving_default", "score_fast", "reconstruct", "generate")
PLANES_SIGNATURE = "score_planes"  # only in the export of a run calibrated with planes
# The signatures that score (what `score --signature` and `beam-score --signature` may call):
# the two every export has, on flux alone, and the planes one.
FLUX_SCORING_SIGNATURES = ("serving_default", "score_fast")
SCORING_SIGNATURES = (*FLUX_SCORING_SIGNATURES, PLANES_SIGNATURE)
