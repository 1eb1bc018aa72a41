"""The stages of the search, each behind a CLI command, and what they share.

- Stages: ``simulate``, ``ingest``, ``inspect``, ``train`` (gan, encoder), ``calibrate``,
  ``score`` (and ``beam_score`` with ``beam_transforms`` on Apache Beam), ``evaluate``,
  ``characterise``, ``rerank``, ``export``, ``demo`` (all of them on a small survey).
- Shared: ``config`` (every stage's options, typed), ``run`` (the run folder), ``loop`` (the
  resumable ledger of long stages).
"""
