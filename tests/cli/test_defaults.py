"""Every option default of the command line is a stage config's field, so that changing a dataclass
default changes the CLI and its --help; every stage takes its config the same way; and the CLI
(with every --help) imports no TensorFlow."""

import dataclasses
import inspect
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from tfanomaly.cli import main
from tfanomaly.cli.options import option_fields
from tfanomaly.pipelines.beam_score import BeamScoreConfig
from tfanomaly.pipelines.config import (
    CATALOG_FORMAT_NAMES,
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

# command -> the configs its options come from (nested configs included), and the fields left out.
SOURCES = {
    "simulate": [(SurveyConfig, ()), (SimulateConfig, ())],
    "ingest": [(IngestConfig, ())],
    "train gan": [(GanTrainConfig, ())],
    "train encoder": [(EncoderTrainConfig, ())],
    "train cae": [(CaeTrainConfig, ())],
    "calibrate": [(CalibrateConfig, ("inversion",))],
    "score": [(ClientConfig, ()), (ScoreConfig, ())],
    "beam-score": [(BeamScoreConfig, ())],
    "merge-scores": [(CatalogConfig, ())],
    "evaluate": [(EvaluateConfig, ())],
    "embed": [(EmbedConfig, ())],
    "report": [(ReportConfig, ())],
    "serve": [(ServeConfig, ())],
    "export": [(ExportConfig, ())],
    "demo": [(DemoConfig, ())],
    "explore": [(ExploreConfig, ())],
    "rerank": [(RerankConfig, ())],
}
# Defaults of the command line alone: the smooth simulator's switch and the demo's folder.
CLI_ONLY = {("simulate", "substructure"): True, ("demo", "out"): "demo_run"}
CASES = [
    (path, field)
    for path, sources in SOURCES.items()
    for config, exclude in sources
    for field in option_fields(config, exclude)
]


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


def has_default(param) -> bool:
    if isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        return param.default is True  # a plain flag has one only when it switches a field off
    return param.default is not None and param.default is not UNSET


def test_every_option_with_a_default_takes_it_from_a_config():
    from_configs = {(path, field.name) for path, field in CASES}
    loose = [
        (path, p.name)
        for path, command in commands()
        for p in command.params
        if has_default(p) and (path, p.name) not in from_configs | CLI_ONLY.keys()
    ]
    assert not loose, f"options with a default that no config holds: {loose}"
    assert SOURCES.keys() <= dict(commands()).keys()
    for (path, name), default in CLI_ONLY.items():
        assert option(path, name).default == default


@pytest.mark.parametrize("path,field", CASES, ids=[f"{p}:{f.name}" for p, f in CASES])
def test_option_default_is_the_config_field_and_help_shows_it(path, field):
    param = option(path, field.name)
    meta = field.metadata
    assert param.help == meta["help"]
    if param.is_flag and not param.secondary_opts:  # --store-images, --no-check
        assert (param.default is True) == (field.default is True)
        return
    # The default as the command line spells it, and read back, is the field's.
    assert param.default == meta.get("cli_default", field.default)
    assert meta.get("parse", lambda v: v)(param.default) == field.default
    if "cli_default" not in meta and param.default is not None:
        assert type(param.default) is type(field.default)
        assert param.show_default is True
        ctx = click.Context(dict(commands())[path])
        shown = "planes" if param.secondary_opts else param.default
        assert f"[default: {shown}]" in param.get_help_record(ctx)[1]
    if "choices" in meta:
        assert tuple(param.type.choices) == meta["choices"]


def test_options_build_the_configs_defaults(monkeypatch):
    """Every command given no options builds its configs' defaults (through build_config)."""
    from tfanomaly.cli.options import build_config

    for path, sources in SOURCES.items():
        command = dict(commands())[path]
        ctx = click.Context(command)
        options = {
            p.name: p.get_default(ctx) for p in command.params if isinstance(p, click.Option)
        }
        for config, _ in sources:
            built = build_config(config, dict(options))
            if config is CalibrateConfig:  # its inversion is not an option
                assert built == CalibrateConfig(), path
            else:
                assert built == config(), (path, config)


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


def test_python_api_defaults_are_the_configs():
    """The functions below the pipelines layer that cannot import its configs keep copies of
    their defaults, checked here."""
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
        defaults = keyword_defaults(function)
        for field in dataclasses.fields(config):
            assert defaults[field.name] == getattr(config(), field.name), (function, field.name)
    assert ExportConfig.name == MODEL_NAME
    defaults = keyword_defaults(finalize)  # it takes the format as a file suffix
    assert defaults["catalog_format"] == CatalogConfig().suffix
    assert defaults["select_sigma"] == CatalogConfig.select_sigma
    assert defaults["select_key"] == CatalogConfig.select_key


def test_every_stage_takes_inputs_then_its_config_then_keywords():
    """One signature: inputs, ``config: XConfig | None = None``, then keyword-only options."""
    from tfanomaly.pipelines.beam_score import beam_score
    from tfanomaly.pipelines.calibrate import calibrate
    from tfanomaly.pipelines.characterise import embed, train_cae
    from tfanomaly.pipelines.evaluate import evaluate
    from tfanomaly.pipelines.export import export
    from tfanomaly.pipelines.ingest import ingest
    from tfanomaly.pipelines.score import score
    from tfanomaly.pipelines.train import train_encoder, train_gan
    from tfanomaly.results.report import build_report

    for stage in (
        calibrate,
        score,
        beam_score,
        evaluate,
        export,
        build_report,
        embed,
        train_cae,
        train_gan,
        train_encoder,
        ingest,
    ):
        parameters = list(inspect.signature(stage).parameters.values())
        names = [p.name for p in parameters]
        config = parameters[names.index("config")]
        assert config.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, stage
        after = parameters[names.index("config") + 1 :]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in after), stage
        for name in ("progress", "echo"):
            assert name not in names or name in [p.name for p in after], (stage, name)


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


@pytest.mark.parametrize("flag", ["--reference-neighbours", "--morphology-neighbours"])
def test_the_k_nn_terms_neighbours_take_their_name_and_its_former_one(flag):
    """k of both k-NN terms is --reference-neighbours (beside --reference-size and -trim);
    the former --morphology-neighbours still sets it."""
    command = dict(commands())["calibrate"]
    ctx = command.make_context("calibrate", ["RUN", flag, "7"], resilient_parsing=True)
    assert ctx.params["morphology_neighbours"] == 7
    help_text = CliRunner().invoke(main, ["calibrate", "--help"], terminal_width=200).output
    assert "--reference-neighbours, --morphology-neighbours" in help_text
