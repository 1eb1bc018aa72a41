"""The run folder: its file names, the check that a run takes a data set, and loading its
networks in a fresh process (the Keras classes register themselves on the way)."""

import subprocess
import sys

import pytest

from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.errors import ConfigError
from tfanomaly.models.generator import Generator
from tfanomaly.pipelines.run import (
    check_run_takes,
    load_network,
    network_path,
    require_networks,
)


def test_a_missing_network_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(ConfigError, match="no encoder.keras; run `tfanomaly train encoder`"):
        load_network(tmp_path, "encoder")
    with pytest.raises(ConfigError, match="no generator.keras; run `tfanomaly train gan`"):
        require_networks(tmp_path, "generator", "critic")
    assert network_path(tmp_path, "cae").name == "cae.keras"


def test_networks_load_in_a_fresh_process(tmp_path):
    Generator.from_preset("tiny16").save(network_path(tmp_path, "generator"))
    script = (
        "import sys; from tfanomaly.pipelines.run import load_network; "
        f"g = load_network({str(tmp_path)!r}, 'generator'); print(type(g).__name__, g.count_params())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == [
        "Generator",
        str(Generator.from_preset("tiny16").count_params()),
    ]


def test_check_run_takes_refuses_another_size_or_band_count(tmp_path):
    run = {"model": {"image_size": 16, "channels": 3}}
    info = DatasetInfo(tmp_path, 4, (16, 16, 3), ("g", "r", "i"), False, None, ())
    check_run_takes(run, info)
    with pytest.raises(ConfigError, match=r"\(16, 16, 1\) cutouts but the run's models take"):
        check_run_takes(run, DatasetInfo(tmp_path, 4, (16, 16, 1), ("g",), False, None, ()))
