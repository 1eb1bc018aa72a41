"""The options of every stage, typed, with their defaults: the one place the CLI and the Python API
take them from, one module per group of stages (``data``, ``training``, ``scoring``,
``discovery``; what they share in ``_shared``), all importable from here. Imports no TensorFlow,
so that the CLI can read them before any command runs.
"""

from tfanomaly.pipelines.config._shared import (
    CATALOG_FORMAT_NAMES,
    CUBES,
    FEATURE_SPACES,
    NAN_POLICIES,
    NO_CHECK_HELP,
    PRECISIONS,
    SPACE_HELP,
    STRETCH_SAMPLE,
    check_steps,
    split_names,
)
from tfanomaly.pipelines.config.data import (
    DemoConfig,
    IngestConfig,
    SimulateConfig,
)
from tfanomaly.pipelines.config.discovery import (
    AUTO_FLOOR,
    AUTO_SELECTION,
    AUTO_SIGMA,
    AUTO_TOP,
    SELECTION_HELP,
    CaeTrainConfig,
    EmbedConfig,
    ExploreConfig,
    RerankConfig,
)
from tfanomaly.pipelines.config.scoring import (
    CatalogConfig,
    ClientConfig,
    EvaluateConfig,
    ExportConfig,
    ScoreConfig,
    ServeConfig,
    parse_shard,
)
from tfanomaly.pipelines.config.training import (
    CalibrateConfig,
    EncoderTrainConfig,
    GanTrainConfig,
)
from tfanomaly.results.report_config import ReportConfig

__all__ = [
    "ReportConfig",
    "STRETCH_SAMPLE",
    "NAN_POLICIES",
    "PRECISIONS",
    "CUBES",
    "CATALOG_FORMAT_NAMES",
    "FEATURE_SPACES",
    "SPACE_HELP",
    "NO_CHECK_HELP",
    "split_names",
    "check_steps",
    "SimulateConfig",
    "IngestConfig",
    "DemoConfig",
    "GanTrainConfig",
    "EncoderTrainConfig",
    "CalibrateConfig",
    "parse_shard",
    "CatalogConfig",
    "ScoreConfig",
    "ExportConfig",
    "ClientConfig",
    "EvaluateConfig",
    "ServeConfig",
    "AUTO_SELECTION",
    "AUTO_SIGMA",
    "AUTO_FLOOR",
    "AUTO_TOP",
    "SELECTION_HELP",
    "CaeTrainConfig",
    "EmbedConfig",
    "RerankConfig",
    "ExploreConfig",
]
