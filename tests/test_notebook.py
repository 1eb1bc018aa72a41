"""The tutorial notebook (examples/tutorial.ipynb) runs from start to end, on a tiny configuration
set through its cell of parameters, in a fresh kernel and a temporary folder."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "tutorial.ipynb"
# Small enough for a few minutes on 2 CPU cores (appended to the cell of parameters).
TINY = {
    "N_OBJECTS": 300,
    "GAN_STEPS": 8,
    "ENCODER_STEPS": 8,
    "N_NEW": 16,
    "CHECK": False,
    "CAE_STEPS": 4,
    "N_LABELS": 8,
}


def test_tutorial_runs(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "the notebook has one cell of parameters"
    names = {line.split("=")[0].strip() for line in cells[0].source.splitlines() if "=" in line}
    assert set(TINY) <= names
    cells[0].source += "\n" + "\n".join(f"{name} = {value!r}" for name, value in TINY.items())
    # The kernel imports this tfanomaly, whether installed or not.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    assert (tmp_path / "tutorial" / "scores" / "rerank.json").exists()
    outputs = "".join(
        o.get("text", "")
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "largest difference from the catalog" in outputs
