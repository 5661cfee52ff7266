"""run --save: the .npz layout with its labels, read back by plain numpy (no pickle) and by load_trace, equal to the
run it came from; ablated runs; refusals."""
import numpy as np
import pytest

from assocmem import load_trace, run
from assocmem.errors import InputError
from assocmem.traces import FORMAT, save_trace
from conftest import ROOT, cli_in_process

PRONOUN = ROOT / "scenarios" / "pronoun.yaml"


def test_the_file_is_plain_numpy_with_labels_and_equals_the_run(tmp_path):
    result = run(ROOT / "scenarios" / "induction.yaml")  # three variants, chars, feedback layers
    path = save_trace(result, tmp_path / "t.npz")
    with np.load(path, allow_pickle=False) as data:
        assert str(data["format"]) == FORMAT
        assert data["variants"].tolist() == [v.variant.name for v in result.variants]
        assert data["prompt_tokens"].dtype.kind == "U" and data["memory_source"].dtype.kind == "U"
        for k, v in enumerate(result.variants):
            for j, p in enumerate(v.prompts):
                n = len(p.prompt.tokens)
                assert data["prompt_tokens"][j, :n].tolist() == list(p.prompt.tokens)
                np.testing.assert_array_equal(data[f"v{k}_logits"][j], p.logits)
                np.testing.assert_array_equal(data[f"v{k}_stream"][j, :n], p.stream)
                np.testing.assert_array_equal(data[f"v{k}_lens_logits"][j], p.lens_logits)
                for s, a in enumerate(p.attention):
                    w = data[f"v{k}_stage{s}_weights"][j]
                    np.testing.assert_array_equal(w[:n, :a.weights.shape[1]], a.weights)
                    assert data[f"v{k}_stage_label"][s] == a.stage.label and data[f"v{k}_stage_layer"][s] == a.layer
                assert data[f"v{k}_margin"][j] == p.expectation.margin


def test_load_trace_reads_back_an_ablated_run(tmp_path):
    result = run(PRONOUN, ablate=["rule:graphs/pronoun.yaml:4"])
    trace = load_trace(save_trace(result, tmp_path / "a.npz"))
    v = trace.variants[0]
    assert trace.memory[1] == ("ВКУСНАЯ = КАШУ", str(ROOT / "graphs" / "pronoun.yaml") + ":4") or \
        trace.memory[1][1].endswith("graphs/pronoun.yaml:4")
    assert trace.prompts[0][-2:] == ["ОНА", "?"] and trace.expect == ["КАШУ", "МАША"]
    assert v.ablated == ["rule ВКУСНАЯ = КАШУ (" + trace.memory[1][1] + ")"]
    assert v.margin[0] < 0 < v.margin_unablated[0]
    assert [s.columns for s in v.stages] == ["positions", "memory"]
    assert not v.stages[1].weights[:, :, 1].any()  # the ablated row has no weight
    assert v.model["dim"] == 1000 and v.layers[1] == "assoc(last)"


def test_the_command_writes_it_and_refuses_other_names(tmp_path):
    out = cli_in_process("run", PRONOUN, "--save", tmp_path / "x.npz")
    assert out.returncode == 0 and "wrote" in out.stdout and (tmp_path / "x.npz").exists()
    bad = cli_in_process("run", PRONOUN, "--save", tmp_path / "x.txt")
    assert bad.returncode == 2 and "must end in .npz" in bad.stderr and bad.stderr.count("\n") == 1
    (tmp_path / "d.npz").mkdir()
    folder = cli_in_process("run", PRONOUN, "--save", tmp_path / "d.npz")
    assert folder.returncode == 2 and "is a directory" in folder.stderr


@pytest.mark.parametrize("content", [b"", b"not a zip", None])
def test_load_trace_refuses_what_is_not_a_trace(tmp_path, content):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, x=np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match="trace"):
        load_trace(path)
