"""The stages of the search, each behind a CLI command, and what they share.

- Stages: ``simulate``, ``ingest``, ``inspect``, ``train`` (gan, encoder), ``calibrate``,
  ``score`` (and ``beam_score`` with ``beam_transforms`` on Apache Beam), ``evaluate``,
  ``characterise`` (train cae, embed), ``rerank``, ``export``, ``demo`` (all of them on a small
  survey).
- Shared: ``config`` (every stage's options, typed), ``run`` (the run folder), ``loop`` (the
  resumable ledger of long stages), ``learning`` (the check that a trained network learned).

The stage functions named as their module (``ingest``, ``calibrate``, ``score``, ``evaluate``,
``export``, ``rerank``, ``beam_score``) are reached as ``tfanomaly.<name>`` or in their module
(``tfanomaly.pipelines.score.score``); the package exports the others and every stage config.
TensorFlow is imported only when a name that needs it is used."""

from tfanomaly._lazy import lazy_exports

_HOMES = {
    "SimulateConfig": "tfanomaly.pipelines.config",
    "IngestConfig": "tfanomaly.pipelines.config",
    "GanTrainConfig": "tfanomaly.pipelines.config",
    "EncoderTrainConfig": "tfanomaly.pipelines.config",
    "CalibrateConfig": "tfanomaly.pipelines.config",
    "ScoreConfig": "tfanomaly.pipelines.config",
    "CatalogConfig": "tfanomaly.pipelines.config",
    "ExportConfig": "tfanomaly.pipelines.config",
    "ClientConfig": "tfanomaly.pipelines.config",
    "EvaluateConfig": "tfanomaly.pipelines.config",
    "CaeTrainConfig": "tfanomaly.pipelines.config",
    "EmbedConfig": "tfanomaly.pipelines.config",
    "ReportConfig": "tfanomaly.pipelines.config",
    "ServeConfig": "tfanomaly.pipelines.config",
    "DemoConfig": "tfanomaly.pipelines.config",
    "RerankConfig": "tfanomaly.pipelines.config",
    "ExploreConfig": "tfanomaly.pipelines.config",
    "BeamScoreConfig": "tfanomaly.pipelines.beam_score",
    "simulate_survey": "tfanomaly.pipelines.simulate",
    "train_gan": "tfanomaly.pipelines.train",
    "train_encoder": "tfanomaly.pipelines.train",
    "train_cae": "tfanomaly.pipelines.characterise",
    "embed": "tfanomaly.pipelines.characterise",
    "Ranker": "tfanomaly.pipelines.rerank",
    "read_catalog": "tfanomaly.pipelines.rerank",
    "read_labels": "tfanomaly.pipelines.rerank",
    "build_scorer": "tfanomaly.pipelines.export",
    "load_inverter": "tfanomaly.pipelines.run",
    "run_demo": "tfanomaly.pipelines.demo",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
del lazy_exports
