"""run --save: the .npz layout with its labels, read back by plain numpy (no pickle) and by load_trace, equal to the
run it came from; ablated runs; refusals."""
import numpy as np
import pytest

from assocmem import load_trace, run
from assocmem.errors import InputError
from assocmem import traces
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


# Hostile input: a --save that would balloon, and load_trace on what is not a trace (one InputError line each).

def test_save_refuses_labels_that_would_balloon(tmp_path):
    """Strings are fixed-width UTF-32: one 200,000-character token in a 400-position prompt would be 313 MiB of
    prompt_tokens (the run itself a few MiB); refused before any array is made, naming the token."""
    long = "A" * 200_000
    (tmp_path / "g.yaml").write_text(f"relations:\n  - {long} = B\n  - B = C\n", encoding="utf-8")
    text = " ".join([long] + ["B"] * 399 + ["C"])
    (tmp_path / "s.yaml").write_text(f"name: bomb\ngraph: g.yaml\nprompts:\n  - text: {text}\n", encoding="utf-8")
    out = cli_in_process("run", tmp_path / "s.yaml", "--dim", "64", "--save", tmp_path / "t.npz")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "prompt_tokens" in out.stderr and "200,000 characters" in out.stderr and "shorter tokens" in out.stderr
    assert not (tmp_path / "t.npz").exists()


def test_save_refuses_a_trace_bigger_than_the_bound(tmp_path, monkeypatch):
    result = run(ROOT / "scenarios" / "induction.yaml")
    actual = sum(a.nbytes for a in traces.trace_arrays(result).values())
    monkeypatch.setattr(traces, "MAX_TRACE_BYTES", int(actual * 0.98))  # the estimate is within 2% of the arrays
    with pytest.raises(InputError, match=r"the trace would take .*more than .* positions \(save fewer"):
        save_trace(result, tmp_path / "t.npz")
    assert not (tmp_path / "t.npz").exists()


def _one_line(path, *match):
    with pytest.raises(InputError) as err:
        load_trace(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text, text
    for m in match:
        assert m in text, text
    return text


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "t.npz"
    save_trace(run(PRONOUN, ablate=["rule:graphs/pronoun.yaml:4"]), path)
    with np.load(path, allow_pickle=False) as data:
        return path, {k: data[k] for k in data.files}


def _rewrite(tmp_path, saved, drop=(), **changes):
    arrays = {k: v for k, v in saved[1].items() if k not in drop}
    arrays.update(changes)
    path = tmp_path / "changed.npz"
    np.savez(path, **arrays)
    return path


def test_load_trace_refuses_a_fifo_without_hanging(tmp_path):
    import os
    import threading

    fifo = tmp_path / "t.npz"
    os.mkfifo(fifo)
    caught = []
    worker = threading.Thread(target=lambda: caught.append(pytest.raises(InputError, load_trace, fifo)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # the bug: open() blocks for a writer; give it one so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_trace hung on a FIFO")
    _one_line(fifo, "not a regular file")


@pytest.mark.parametrize("special", ["/dev/zero", "folder"])
def test_load_trace_refuses_devices_and_folders(tmp_path, special):
    if special == "folder":
        special = tmp_path / "d.npz"
        special.mkdir()
    _one_line(special, "regular .npz file")


def test_load_trace_names_a_missing_file(tmp_path):
    _one_line(tmp_path / "none.npz", "cannot read the trace")


def test_load_trace_refuses_npy_and_text(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    _one_line(tmp_path / "a.npy", "single .npy array")
    (tmp_path / "t.npz").write_text("hello\n" * 100)
    text = _one_line(tmp_path / "t.npz", "not an .npz (zip) file")
    assert "pickle" not in text


def test_load_trace_refuses_a_tiny_zip_claiming_a_huge_array(tmp_path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (26 * 2**30 // 8,)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("format.npy", header.getvalue())
    assert path.stat().st_size < 1000
    _one_line(path, "'format' says it holds 27,917,287,424 bytes")


def test_load_trace_bounds_the_total_it_reads(tmp_path, saved, monkeypatch):
    monkeypatch.setattr(traces, "MAX_TRACE_BYTES", 1000)
    _one_line(saved[0], "more than")


def test_load_trace_refuses_object_arrays(tmp_path, saved):
    path = tmp_path / "o.npz"
    np.savez(path, **{**saved[1], "vocabulary": np.array([1, "x"], dtype=object)})
    _one_line(path, "'vocabulary' holds Python objects")


def test_load_trace_reads_its_fixture_back(saved):
    assert load_trace(saved[0]).expect == ["КАШУ", "МАША"]


@pytest.mark.parametrize("change, message", [
    (dict(drop=["v0_logits"]), "missing 'v0_logits'"),
    (dict(drop=["prompt_length"]), "missing 'prompt_length'"),
    (dict(variants=np.array(["model", "extra"])), "missing 'v1_model'"),
    (dict(v0_model=np.array("{not json")), "'v0_model' is not a JSON object"),
    (dict(v0_model=np.array("[1, 2]")), "'v0_model' is not a JSON object"),
    (dict(prompt_length=np.array([-1, 3])), "prompt_length is outside"),
    (dict(prompt_length=np.array([3, 99])), "prompt_length is outside"),
    (dict(prompt_length=np.array(["a", "b"])), "'prompt_length' is a 1-d <U1 array"),
    (dict(variants=np.array("model")), "'variants' is a 0-d"),
    (dict(v0_margin=np.array([-np.inf, 0.5])), "v0_margin holds values no run writes"),
    (dict(v0_margin=np.array([np.nan, 0.5])), "v0_margin holds values no run writes"),
    (dict(v0_margin_unablated=np.array([-np.inf, 0.5])), "v0_margin holds values no run writes"),
    (dict(v0_logits=np.zeros((2, 1))), "'v0_logits' has shape (2, 1)"),
    (dict(v0_stage_columns=np.array(["positions", "rows"])), "is 'rows'"),
    (dict(v0_stage_layer=np.array([1])), "'v0_stage_index' has shape"),
])
def test_load_trace_refuses_a_corrupt_trace(tmp_path, saved, change, message):
    _one_line(_rewrite(tmp_path, saved, **change), message)
