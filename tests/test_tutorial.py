"""docs/tutorial.ipynb runs from top to bottom in a fresh kernel, so it cannot rot as the code changes."""
import json
import sys

import nbformat
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def test_the_tutorial_runs_without_an_error(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    # The kernel python3 is this interpreter (the venv's, where assocmem is installed): JUPYTER_PATH is searched
    # first, so a python3 kernel of another Python in the user's or the system's folders cannot stand in for it.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 7  # every picture the text talks about was drawn
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "КАШУ" in text and "PASS" in text and "Селтикс" in text and "Traceback" not in text
    nbformat.write(nb, tmp_path / "tutorial.ipynb")  # the executed copy, to look at after a failure
