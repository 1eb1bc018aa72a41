"""The options of the HTML report (``results.report.build_report``), apart from the report's heavy
imports so that the command line reads them without loading anything."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReportConfig:
    """Options of ``tfanomaly report`` (``results.report.build_report``).

    Args:
        top_n: objects per gallery.
        thumb_size: pixels per thumbnail panel.
        sigma_cut: the cut marked on the score histograms.
        typical: the most typical members shown per cluster.
    """

    top_n: int = field(default=24, metadata={"help": "Objects per gallery.", "flag": "--top"})
    thumb_size: int = field(
        default=32, metadata={"help": "Pixels per thumbnail panel (cutouts are downsized to this)."}
    )
    sigma_cut: float = field(default=3.0, metadata={"help": "Cut marked on histograms."})
    typical: int = 4
