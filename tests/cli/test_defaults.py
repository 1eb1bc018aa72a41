"""Every option default of the command line is a stage config's field, so that changing a dataclass
default changes the CLI and its --help; and the CLI (with every --help) imports no TensorFlow."""

import dataclasses
import inspect
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from tfanomaly.cli import main
from tfanomaly.data.resize import RESIZE_METHODS
from tfanomaly.data.stretch import STRETCH_MODES
from tfanomaly.models.score_config import (
    SCORE_COMBINES,
    InversionConfig,
    ScoreSettings,
    format_term_weights,
)
from tfanomaly.pipelines.beam_score import BeamScoreConfig
from tfanomaly.pipelines.config import (
    CATALOG_FORMAT_NAMES,
    CUBES,
    FEATURE_SPACES,
    NAN_POLICIES,
    PRECISIONS,
    CaeTrainConfig,
    CalibrateConfig,
    CatalogConfig,
    ClientConfig,
    DemoConfig,
    EmbedConfig,
    EncoderTrainConfig,
    EvaluateConfig,
    ExploreConfig,
    ExportConfig,
    GanTrainConfig,
    IngestConfig,
    ReportConfig,
    RerankConfig,
    ScoreConfig,
    ServeConfig,
    SimulateConfig,
)
from tfanomaly.simulate.config import SurveyConfig

UNSET = getattr(click.core, "UNSET", None)  # click >= 8.3 marks "no default" with a sentinel


def same_names(config, names: str) -> dict:
    """{option: (config, field)} for options named as the config's fields (space-separated)."""
    return {name: (config, name) for name in names.split()}


_CATALOG = same_names(CatalogConfig, "catalog_format select_sigma select_key")

# command -> {parameter: (config class, field)}: where each option's default comes from.
SOURCES = {
    "simulate": {
        **same_names(SurveyConfig, "n_objects size anomaly_fraction seed"),
        "workers": (SimulateConfig, "workers"),
    },
    "ingest": same_names(IngestConfig, "shard_size nan_policy fill_value resize stretch"),
    "train gan": same_names(
        GanTrainConfig,
        "preset steps batch_size n_critic gp_weight learning_rate checkpoint_every seed "
        "precision ema_decay contrastive",
    ),
    "train encoder": same_names(
        EncoderTrainConfig, "steps batch_size learning_rate lam checkpoint_every seed"
    ),
    "train cae": same_names(
        CaeTrainConfig,
        "selection select_key images steps batch_size learning_rate checkpoint_every seed",
    ),
    "calibrate": {
        **same_names(CalibrateConfig, "fit_size seed"),
        **same_names(
            ScoreSettings,
            "smooth_sigma top_fraction feature_weight combine robust_iterations linear_components",
        ),
        "components": (ScoreSettings, "n_components"),
    },
    "beam-score": {
        **same_names(BeamScoreConfig, "signature min_batch_size max_batch_size"),
        **same_names(CatalogConfig, "catalog_format select_key"),
    },
    "score": {
        **same_names(ClientConfig, "model signature"),
        **same_names(InversionConfig, "steps learning_rate lam"),
        "beta1": (InversionConfig, "beta_1"),
        "beta2": (InversionConfig, "beta_2"),
        "batch_size": (ScoreConfig, "batch_size"),
        **_CATALOG,
    },
    "merge-scores": _CATALOG,
    "evaluate": same_names(EvaluateConfig, "seed"),
    "embed": same_names(
        EmbedConfig, "space selection select_key n_neighbors min_dist min_cluster_size seed"
    ),
    "report": same_names(ReportConfig, "top_n thumb_size sigma_cut"),
    "serve": same_names(ServeConfig, "host grpc_port rest_port"),
    "export": same_names(ExportConfig, "name steps"),
    "demo": same_names(DemoConfig, "n_objects size seed gan_steps encoder_steps cae_steps"),
    "explore": same_names(
        ExploreConfig, "host port rerank_every page_size panel_size similar features"
    ),
    "rerank": same_names(RerankConfig, "features"),
}
# Defaults of the command line alone: how a user spells "every kind", the smooth simulator's
# switch, and the demo's folder.
CLI_ONLY = {
    ("simulate", "kinds"): "all",
    ("simulate", "substructure"): True,
    ("demo", "out"): "demo_run",
    ("calibrate", "terms"): ",".join(ScoreSettings().terms),  # a comma list of the tuple
    ("calibrate", "weights"): format_term_weights(ScoreSettings().term_weights),
    ("train gan", "augment"): ",".join(GanTrainConfig().augment) or "none",
    # The Python functions' own keyword defaults (the planes are used where the data has them).
    ("calibrate", "planes"): CalibrateConfig.planes,
    ("score", "planes"): ScoreConfig.planes,
}
CHOICES = {
    ("ingest", "nan_policy"): NAN_POLICIES,
    ("calibrate", "combine"): SCORE_COMBINES,
    ("ingest", "resize"): RESIZE_METHODS,
    ("ingest", "stretch"): STRETCH_MODES,
    ("train gan", "precision"): PRECISIONS,
    ("train cae", "images"): CUBES,
    ("score", "catalog_format"): CATALOG_FORMAT_NAMES,
    ("merge-scores", "catalog_format"): CATALOG_FORMAT_NAMES,
    ("beam-score", "catalog_format"): CATALOG_FORMAT_NAMES,
    ("explore", "features"): FEATURE_SPACES,
    ("rerank", "features"): FEATURE_SPACES,
    ("embed", "space"): FEATURE_SPACES,
}


def commands(group=main, path=()):
    """(path, command) for every command under the group, subgroups included."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def option(path: str, name: str) -> click.Option:
    command = dict(commands())[path]
    return next(p for p in command.params if p.name == name)


def field_default(config, name):
    return getattr(config(), name)


def has_default(param) -> bool:
    if isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        return False  # a plain flag: off unless given
    return param.default is not None and param.default is not UNSET


def test_every_option_with_a_default_takes_it_from_a_config():
    loose = [
        (path, p.name)
        for path, command in commands()
        for p in command.params
        if has_default(p) and p.name not in SOURCES.get(path, {}) and (path, p.name) not in CLI_ONLY
    ]
    assert not loose, f"options with a default that no config holds: {loose}"
    assert set(SOURCES) <= dict(commands()).keys()


@pytest.mark.parametrize(
    "path,name", [(path, name) for path, fields in SOURCES.items() for name in fields]
)
def test_option_default_is_the_config_field_and_help_shows_it(path, name):
    config, field = SOURCES[path][name]
    param = option(path, name)
    assert param.default == field_default(config, field)
    assert type(param.default) is type(field_default(config, field))
    if param.default is not None:
        assert param.show_default is True
        ctx = click.Context(dict(commands())[path])
        assert f"[default: {param.default}]" in param.get_help_record(ctx)[1]


@pytest.mark.parametrize("path,name", sorted(CHOICES))
def test_choices_are_the_configs(path, name):
    assert tuple(option(path, name).type.choices) == CHOICES[path, name]


def test_help_shows_the_config_defaults():
    result = CliRunner().invoke(main, ["train", "gan", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert f"[default: {GanTrainConfig.steps}]" in result.output
    assert "[float32|mixed_bfloat16|mixed_float16]" in result.output


def test_catalog_format_names_are_the_writers():
    from tfanomaly.results.catalog import CATALOG_FORMATS

    assert CATALOG_FORMAT_NAMES == tuple(suffix.lstrip(".") for suffix in CATALOG_FORMATS)


def keyword_defaults(function) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def assert_defaults_of(function, config) -> None:
    defaults = keyword_defaults(function)
    for field in dataclasses.fields(config):
        assert defaults[field.name] == field_default(config, field.name), (function, field.name)


def test_python_api_defaults_are_the_configs():
    """The functions the CLI calls default to the same values (those below the pipelines layer
    cannot import its configs, so their copies are checked here)."""
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.results.catalog import finalize
    from tfanomaly.serving.client import GrpcClient, RestClient
    from tfanomaly.serving.local import LocalServer
    from tfanomaly.serving.saved_model import MODEL_NAME

    for function, config in [
        (simulate_survey, SimulateConfig),
        (LocalServer, ServeConfig),
        (GrpcClient, ClientConfig),
        (RestClient, ClientConfig),
    ]:
        assert_defaults_of(function, config)
    assert ExportConfig.name == MODEL_NAME
    for function in (finalize,):  # the function takes the format as a file suffix
        defaults = keyword_defaults(function)
        assert defaults["catalog_format"] == f".{CatalogConfig.catalog_format}"
        assert defaults["select_sigma"] == CatalogConfig.select_sigma
        assert defaults["select_key"] == CatalogConfig.select_key


def test_demo_options_reach_its_config(monkeypatch, tmp_path):
    import tfanomaly.pipelines.demo

    seen = {}
    monkeypatch.setattr(
        tfanomaly.pipelines.demo,
        "run_demo",
        lambda out, config, **_: seen.update(out=out, config=config),
    )
    args = [
        "demo",
        "--out",
        str(tmp_path),
        "-n",
        "7",
        "--size",
        "48",
        "--seed",
        "3",
        "--gan-steps",
        "4",
        "--encoder-steps",
        "5",
        "--cae-steps",
        "6",
        "--quiet",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen["config"] == DemoConfig(
        n_objects=7, size=48, seed=3, gan_steps=4, encoder_steps=5, cae_steps=6
    )


def test_the_cli_and_every_help_import_no_tensorflow():
    paths = [[], ["train"], *(path.split() for path, _ in commands())]  # groups, then commands
    script = (
        "import sys\n"
        "import tfanomaly.cli\n"
        "print('tensorflow after import:', 'tensorflow' in sys.modules)\n"
        f"for path in {paths!r}:\n"
        "    tfanomaly.cli.main([*path, '--help'], standalone_mode=False)\n"
        "print('tensorflow after --help:', 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("tensorflow after")]
    assert lines == ["tensorflow after import: False", "tensorflow after --help: False"]
    done = subprocess.run(
        [sys.executable, "-c", "import sys, tfanomaly.cli; print('tensorflow' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_python_m_tfanomaly_cli_runs_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "tfanomaly.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "Usage:" in done.stdout, done.stderr
