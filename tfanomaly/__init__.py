"""tfanomaly: find anomalous galaxies in imaging surveys with a WGAN-GP (Storey-Fisher et al. 2021).

The Python API is :mod:`tfanomaly.api`, whose names are attributes of this package too
(``tfanomaly.load_run``, ``tfanomaly.score``, ...), imported when first used: ``import tfanomaly``
does not import TensorFlow. The stages live in :mod:`tfanomaly.pipelines`, the networks in
:mod:`tfanomaly.models`, the CLI in :mod:`tfanomaly.cli`.
"""

from tfanomaly._lazy import lazy_exports

__version__ = "0.1.0"

# The names of tfanomaly.api (tests/test_api.py checks that the two lists agree).
__all__ = [
    "simulate_survey",
    "ingest",
    "train_gan",
    "train_encoder",
    "calibrate",
    "score",
    "merge_results",
    "evaluate",
    "train_cae",
    "embed",
    "build_report",
    "export",
    "rerank",
    "beam_score",
    "run_demo",
    "SurveyConfig",
    "SimulateConfig",
    "IngestConfig",
    "GanTrainConfig",
    "EncoderTrainConfig",
    "CalibrateConfig",
    "ScoreSettings",
    "ScoreConfig",
    "InversionConfig",
    "CatalogConfig",
    "EvaluateConfig",
    "CaeTrainConfig",
    "EmbedConfig",
    "ReportConfig",
    "ExportConfig",
    "RerankConfig",
    "RelevanceConfig",
    "BeamScoreConfig",
    "DemoConfig",
    "Run",
    "load_run",
    "read_cutouts",
    "read_catalog",
    "read_results",
    "read_cube",
    "ResultsView",
    "LabelStore",
    "export_labels",
    "import_labels",
    "read_labels",
    "LABELS",
    "Ranker",
    "example_columns",
    "SCORES",
    "KIND_NAMES",
    "TfanomalyError",
    "InputError",
    "ConfigError",
    "DatasetError",
]
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(__all__, "tfanomaly.api"))
del lazy_exports
