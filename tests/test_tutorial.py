"""docs/tutorial.ipynb runs from top to bottom in a fresh kernel, so it cannot rot as the code changes."""
import nbformat
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def test_the_tutorial_runs_without_an_error(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    # kernel python3: ipykernel's own spec, which runs this interpreter (the venv's); a cell that raises fails here
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 7  # every picture the text talks about was drawn
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "КАШУ" in text and "PASS" in text and "Селтикс" in text and "Traceback" not in text
    nbformat.write(nb, tmp_path / "tutorial.ipynb")  # the executed copy, to look at after a failure
