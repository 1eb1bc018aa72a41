"""The options of the HTML report (``results.report.build_report``), apart from the report's heavy
imports so that the command line reads them without loading anything."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportConfig:
    """Options of ``tfanomaly report`` (``results.report.build_report``).

    Args:
        top_n: objects per gallery.
        thumb_size: pixels per thumbnail panel.
        sigma_cut: the cut marked on the score histograms.
        typical: the most typical members shown per cluster.
    """

    top_n: int = 24
    thumb_size: int = 32
    sigma_cut: float = 3.0
    typical: int = 4
