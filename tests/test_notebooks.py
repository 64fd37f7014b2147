"""The notebooks run top to bottom (on a tiny budget) and are committed without outputs."""

import os

import nbclient
import nbformat
import pytest

from .conftest import REPO_ROOT

NOTEBOOKS = ["quickstart", "own_data", "tuning"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(os.path.join(REPO_ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_in_colab_and_installs_itself_there(name):
    notebook = nbformat.read(os.path.join(REPO_ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
    assert f"/blob/main/notebooks/{name}.ipynb)" in notebook.cells[0].source  # the badge
    install = notebook.cells[1].source
    # Installs only where ns3l_tf is missing: executing it here (CI, offline) does nothing.
    assert 'if importlib.util.find_spec("ns3l_tf") is None:\n    %pip install' in install
    # The data comes through the download path (offline copies first).
    assert any("download=True" in cell.source for cell in notebook.cells)


@pytest.mark.large
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    monkeypatch.setenv("NS3L_NOTEBOOK_STEPS", "6")
    monkeypatch.setenv("NS3L_NOTEBOOK_TRIALS", "2")
    monkeypatch.setenv("NS3L_TUNE_DIR", str(tmp_path / "tune"))
    notebook = nbformat.read(os.path.join(REPO_ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    assert {
        "quickstart": "after 6 steps",
        "own_data": "mixmatch+ns3l: test error",
        "tuning": "best: T=",
    }[name] in printed
