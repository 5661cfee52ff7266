"""The HTML report: its data against --json, its escaping, where it refuses to write, and the page itself in headless
Chromium (hover, lock, unlock, full rows on demand, 2000 tokens, every shipped scenario, no network)."""
import base64
import json
import os
import random
import re
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from assocmem import run
from assocmem.html_report import run_data, script_json, write_html
from cases import MARKUP_SCENARIO, STRICT_JSON_EDGES
from conftest import ROOT, cli_in_process, write

SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
ARTIFACTS = ROOT / "test-artifacts"  # screenshots, git-ignored: look at them after a run
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium tries to reach its servers on start; the tests assert silence.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FIRST_RENDER_S = 15  # budget for a 2000-token, 20-layer report to load and draw (about 2 s measured on a loaded 2-core
                     # machine): a smoke test of "stays responsive", not a benchmark

# Every kind, a prefix read with steps and hops (its reads), stages at all, last and before_last positions.
TRACE = """
name: trace
relations:
  - a = b + c
  - b -> d
  - c + d = a
model:
  dim: 64
  temperature: 0.2
  pipeline:
    - feedback: {window: 2}
    - layer: [context, {assoc: {positions: before_last}}, {mlp: {temperature: 0.5}}]
    - context: {positions: last, values: tokens, match: prefix, steps: 2, hops: 2, threshold: 0.55, fallback: previous, temperature: 0.05}
prompts:
  - {text: "a b c d a b c d a b c d a ?", expect: b, candidates: [b, c], name: "named <b>prompt</b>"}
  - {text: d c b, expect: a}
"""

HOSTILE = r"""name: "</script><script>window.pwned = 1</script>"
description: "<img src=x onerror=window.pwned=4> & </style>"
relations:
  - "<img/src=x/onerror=window.pwned=2> = </title>"
prompts:
  - text: "</script><script>window.pwned=3</script> <!-- &amp; <b>x</b> ?"
    expect: "<img/src=x/onerror=window.pwned=2>"
    name: "</style><style>body{display:none}</style>"
"""


# ---- no browser needed

def test_script_json_cannot_end_its_script():
    text = script_json({"t": "</script><!-- & \u2028\u2029 >"})
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == {"t": "</script><!-- & \u2028\u2029 >"}


def test_the_page_is_one_file_that_loads_nothing(tmp_path):
    path = write_html(run(ROOT / "scenarios" / "pronoun.yaml"), tmp_path / "p.html")
    text = path.read_text(encoding="utf-8")
    assert "default-src 'none'" in text
    assert not re.search(r"""(src|href)\s*=|https?://|@import|url\(""", text.split('id="assocmem-data"')[0])
    for code in re.findall(r"<script>(.*?)</script>", text, re.S):
        assert not re.search(r"https?://|fetch\(|XMLHttpRequest|import\(", code)


def test_hostile_text_stays_text_in_the_file(tmp_path):
    path = write_html(run(write(tmp_path, "h.yaml", HOSTILE)), tmp_path / "h.html")
    text = path.read_text(encoding="utf-8")
    data = text.split('<script type="application/json" id="assocmem-data">')[1].split("</script>")[0]
    assert "<" not in data and ">" not in data and "&" not in data
    assert text.count("<script") == 2 and text.count("</script>") == 2  # the data and the view, nothing more
    assert "<title>assocmem run: &lt;/script&gt;&lt;script&gt;window.pwned = 1&lt;/script&gt;</title>" in text


def unpacked(p):
    """What the page's inflate() gives: the float32 or int32 array of a packed one."""
    return np.frombuffer(zlib.decompress(base64.b64decode(p["b64"])), "<f4" if p["t"] == "f32" else "<i4")


def test_page_data_is_the_runs_numbers(tmp_path):
    """Without a browser: every array the page carries, decoded, is the run's (float32 of it): each stage's rows,
    top entries (largest first), counts, sums and full rows, its reads, the lens, the similarity and the logits."""
    result = run(write(tmp_path, "trace.yaml", TRACE))
    data = run_data(result)
    v, vd = result.variants[0], data["variants"][0]
    assert vd["memory"] == [[r.label, str(r.source)] for r in v.memory_rows]
    for p, pd in zip(v.prompts, vd["prompts"]):
        assert pd["tokens"] == list(p.prompt.tokens) and pd["margin"] == p.expectation.margin
        np.testing.assert_allclose(unpacked(pd["lens"]).reshape(p.lens_logits.shape), p.lens_logits, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(unpacked(pd["similarity"]).reshape(p.lens_similarity.shape), p.lens_similarity,
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(unpacked(pd["logits"]), p.logits, rtol=1e-6, atol=1e-7)
        assert len(pd["stages"]) == len(p.attention)
        for a, sd in zip(p.attention, pd["stages"]):
            W = a.weights
            rows = unpacked(sd["rows"])
            assert rows.tolist() == np.flatnonzero(np.abs(W).sum(axis=1) > 0).tolist(), sd["label"]
            k = sd["k"]
            index = unpacked(sd["top_index"]).reshape(len(rows), k)
            value = unpacked(sd["top_value"]).reshape(len(rows), k)
            full = unpacked(sd["full"])
            ends = np.concatenate([[0], np.cumsum(unpacked(sd["lengths"]))])
            for r, pos in enumerate(rows):
                want = sorted(range(W.shape[1]), key=lambda c: (-W[pos, c], c))[:k]
                np.testing.assert_allclose(W[pos, want], W[pos, index[r]], atol=1e-7)  # the k largest, up to ties
                np.testing.assert_allclose(value[r], W[pos, index[r]], rtol=1e-6, atol=1e-7)
                assert unpacked(sd["count"])[r] == np.count_nonzero(W[pos])
                assert unpacked(sd["total"])[r] == pytest.approx(W[pos].sum(), rel=1e-6)
                row = np.zeros(W.shape[1])
                row[:ends[r + 1] - ends[r]] = full[ends[r]:ends[r + 1]]
                np.testing.assert_allclose(row, W[pos], rtol=1e-6, atol=1e-30)
            for (name, w), part in zip(a.parts, sd.get("parts", [])):
                assert part["name"] == name
                np.testing.assert_allclose(unpacked(part["w"]), w, rtol=1e-6, atol=1e-30)
            assert len(sd.get("parts", [])) == len(a.parts)


def one_line_exit_2(r, message):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("target, message", [
    ("missing/r.html", "does not exist"),
    (".", "is a directory"),
    ("/dev/null", "is a character device"),
    ("link.html", "is a symbolic link"),
    ("fifo.html", "is a FIFO"),
    ("scenarios/pronoun.yaml", "is an input file (the scenario or its graph)"),
    ("graphs/pronoun.yaml", "is an input file (the scenario or its graph)"),
])
def test_unwritable_targets_are_one_line_and_exit_2(tmp_path, target, message):
    os.symlink(tmp_path / "nowhere", tmp_path / "link.html")
    os.mkfifo(tmp_path / "fifo.html")
    path = target if target.startswith("/") else ROOT / target if target.startswith(("scenarios", "graphs")) else tmp_path / target
    before = Path(path).read_bytes() if Path(path).is_file() else None
    one_line_exit_2(cli_in_process("run", "scenarios/pronoun.yaml", "--html", path), message)
    one_line_exit_2(cli_in_process("sweep", "scenarios/pronoun.yaml", "--seeds", 1, "--html", path), message)
    assert not list(tmp_path.glob(".*.part"))
    if before is not None:
        assert Path(path).read_bytes() == before


def test_a_regular_file_is_replaced_whole(tmp_path):
    target = tmp_path / "r.html"
    target.write_text("old")
    r = cli_in_process("run", "scenarios/pronoun.yaml", "--html", target)
    assert r.returncode == 0 and f"wrote {target}" in r.stdout
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- in the browser

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium: `make test` installs Debian's package when run as root "
                    "(apt-get install chromium); elsewhere install it to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1500, "height": 1100})
        yield context
        context.close()


class Report:
    """A report opened in the browser, with every request it made and every error it raised."""

    def __init__(self, browser, path: Path, height: int = 1100):
        self.path = path
        self.page = page = browser.new_page()
        page.set_viewport_size({"width": 1500, "height": height})
        self.requests, self.errors = [], []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.route("**/*", lambda route: route.continue_() if route.request.url == path.as_uri() else route.abort())
        start = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        self.load_s = time.perf_counter() - start

    def clean(self):
        """No error, and nothing asked of the network: only the file itself (and data: URLs) was requested."""
        assert not self.errors, self.errors
        assert all(u == self.path.as_uri() or u.startswith("data:") for u in self.requests), self.requests

    def focus(self):
        label = self.page.locator("#focus-label")
        return int(label.get_attribute("data-focus")), label.get_attribute("data-locked")

    def show(self, pos):
        """Scroll the positions list to `pos` (a virtual list draws only the rows on screen) and hover it."""
        self.page.eval_on_selector("#positions", f"e => {{ e.scrollTop = Math.max(0, {pos} * 22 - 100); }}")
        row = self.page.locator(f"#positions [data-pos='{pos}']")
        row.wait_for()
        row.hover()
        self.page.wait_for_function(f"document.getElementById('focus-label').dataset.focus === '{pos}'")
        return row

    def stage_rows(self):
        """{stage number: [(column, shown value)]} of every stage card that shows weights."""
        return self.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.stage[data-stage]')]
            .map(c => [c.dataset.stage, [...c.querySelectorAll('.entries .entry')]
                .map(e => [Number(e.dataset.col), Number(e.querySelector('.val').textContent)])]))""")

    def screenshot(self, name, capsys):
        """A full-page PNG in test-artifacts/, its path printed past pytest's capture."""
        ARTIFACTS.mkdir(exist_ok=True)
        out = ARTIFACTS / name
        self.page.screenshot(path=str(out), full_page=True)
        with capsys.disabled():
            print(f"\n  screenshot: {out}")
        return out


def flat_stages(prompt_json):
    return [s for layer in prompt_json["layers"] for s in layer["stages"]]


def check_row_against_json(shown, row, k=8):
    """The shown entries are the row's largest (those that would not read 0.000), largest first, at 3 decimals."""
    row = np.asarray(row)
    want = sorted(((w, c) for c, w in enumerate(row) if abs(w) >= 0.0005), key=lambda x: (-x[0], x[1]))[:k]
    assert len(shown) == len(want)
    for (c, v), (w, _) in zip(shown, want):
        assert abs(v - row[c]) <= 0.0005 + 1e-6, (c, v, row[c])
        assert abs(row[c] - w) <= 1e-6  # the k-th largest, up to float32 ties


def test_hovering_a_position_shows_its_weights_from_json(browser, tmp_path):
    scenario = write(tmp_path, "trace.yaml", TRACE)
    html = tmp_path / "trace.html"
    r = cli_in_process("run", scenario, "--json", "--html", html)
    assert r.returncode in (0, 1), r.stderr
    data = json.loads(r.stdout)["variants"][0]["prompts"][0]
    stages = flat_stages(data)
    report = Report(browser, html)
    page = report.page
    assert "named <b>prompt</b>" in page.locator("#verdict").inner_text()
    margin = page.locator("#verdict .badge").inner_text()
    assert margin == f"{'PASS' if data['passed'] else 'FAIL'} {data['margin']:+.3f}"
    T = len(data["tokens"])
    for pos in (T - 1, T - 2, 5, 1):
        report.show(pos)
        shown = report.stage_rows()
        with_weights = [i for i, s in enumerate(stages) if any(s["attention"][pos])]
        assert sorted(map(int, shown)) == with_weights, pos
        for i, entries in shown.items():
            check_row_against_json(entries, stages[int(i)]["attention"][pos])
        sims = page.evaluate("() => [...document.querySelectorAll('#positions .pos .s')].map(e => Number(e.textContent))")
        want = data["layers"][-1]["similarity_last_to_positions"]
        assert len(sims) == T and np.allclose(sims, np.round(want, 2), atol=0.0051)
    # the reads of the prefix read, at the last position
    report.show(T - 1)
    last = stages[-1]
    for name, row in last["reads"].items():
        line = page.locator(f".part[data-part='{name}']")
        if max(row) < 0.01:
            assert line.count() == 0
            continue
        values = [float(v) for v in line.locator(".val").all_inner_texts()]
        assert values == pytest.approx(sorted((round(w, 3) for w in row if w >= 0.01), reverse=True)[:4], abs=0.0011)
    # the heatmap's header cells stand over its columns (a token box once broke the table's layout)
    lefts = page.evaluate("""() => [...document.querySelectorAll('#lens-heat tr')].slice(0, 2)
        .map(r => [...r.children].map(c => Math.round(c.getBoundingClientRect().left)))""")
    assert lefts[0] == lefts[1]
    # a layer of the lens, clicked, puts its similarity in the positions list
    page.locator("#lens-top tr[data-layer='1'] th").click()
    sims = page.evaluate("() => [...document.querySelectorAll('#positions .pos .s')].map(e => Number(e.textContent))")
    assert np.allclose(sims, np.round(data["layers"][0]["similarity_last_to_positions"], 2), atol=0.0051)
    # the logit lens: each layer's top 5 names and values
    lens = [data["embedding_logits_last"]] + [layer["logits_last"] for layer in data["layers"]]
    for layer, logits in enumerate(lens):
        cells = page.locator(f"#lens-top tr[data-layer='{layer}'] td").all_inner_texts()
        top = sorted(logits.items(), key=lambda kv: -kv[1])[:5]
        assert [c.split()[0] for c in cells] == [n for n, _ in top]
        assert [float(c.split()[-1]) for c in cells] == pytest.approx([round(v, 3) for _, v in top], abs=0.0011)
    report.clean()


def test_click_locks_hover_previews_and_unlocking_returns(browser, tmp_path):
    html = write_html(run(write(tmp_path, "trace.yaml", TRACE)), tmp_path / "t.html")
    report = Report(browser, html)
    page, T = report.page, 14
    assert report.focus() == (T - 1, "")  # nothing hovered or locked: the last position, the readout's
    report.show(3).click()
    assert report.focus() == (3, "3")
    report.show(6)  # hover survives the lock: it previews another position...
    assert report.focus() == (6, "3") and "locked on 3" in page.locator("#focus-label").inner_text()
    page.mouse.move(5, 5)  # ...and leaving the list returns to the locked one
    page.wait_for_function("document.getElementById('focus-label').dataset.focus === '3'")
    assert report.focus() == (3, "3") and page.locator("#unlock").is_visible()
    page.keyboard.press("ArrowDown")
    assert report.focus() == (4, "4")
    page.keyboard.press("Escape")
    page.wait_for_function("document.getElementById('focus-label').dataset.locked === ''")
    assert report.focus() == (T - 1, "") and not page.locator("#unlock").is_visible()
    report.show(2).click()
    report.show(2).click()  # clicking the locked position again unlocks it
    assert report.focus()[1] == ""
    report.show(2).click()
    page.locator("#unlock").click()
    page.wait_for_function("document.getElementById('focus-label').dataset.locked === ''")
    entry = page.locator(".stage[data-stage='1'] .entries .entry").first  # layer 2's context read of the last position
    column = int(entry.get_attribute("data-col"))
    entry.click()  # follows the read: locks on the position it attended to
    assert report.focus() == (column, str(column))
    report.clean()


def test_a_stage_map_shows_every_positions_weights(browser, tmp_path):
    """The map of layer 1 (feedback, window 2, every position): hovering cell (query i, key c) reads the weight
    --json has; clicking a row locks on it."""
    html = tmp_path / "t.html"
    r = cli_in_process("run", write(tmp_path, "trace.yaml", TRACE), "--json", "--html", html)
    weights = flat_stages(json.loads(r.stdout)["variants"][0]["prompts"][0])[0]["attention"]
    report = Report(browser, html)
    page = report.page
    page.locator(".stage[data-stage='0'] button.mapb").click()
    canvas = page.locator("canvas.map[data-map='0']")
    page.wait_for_function("() => document.querySelector('canvas.map')?.width > 0")
    box, size = canvas.bounding_box(), int(canvas.get_attribute("width"))
    T = len(weights)
    for i, c in ((5, 4), (5, 3), (13, 11), (9, 2)):
        page.mouse.move(box["x"] + (c + 0.5) * box["width"] / T, box["y"] + (i + 0.5) * box["height"] / T)
        page.wait_for_function("() => !document.querySelector('.tip').hidden")
        tip = page.locator(".tip").inner_text()
        assert tip.startswith(f"{i} ") and f"→ {c} " in tip and tip.endswith(f"{weights[i][c]:.3f}"), (tip, i, c)
    page.mouse.click(box["x"] + 2.5 * box["width"] / T, box["y"] + 7.5 * box["height"] / T)
    assert report.focus() == (7, "7") and size >= T
    report.clean()


def long_copy(path: Path, tokens: int = 2000) -> Path:
    """A copy 2000 tokens back, through 20 layers: a context read at every position (full 2000-column rows), the
    default recipe's prefix read, and 18 layers of memory reads at the last position."""
    rng = random.Random(0)
    text = ["КОТ", "ЕСТ", "РЫБУ"] + [f"w{rng.randrange(60)}" for _ in range(tokens - 6)] + ["КОТ", "ЕСТ", "?"]
    return write(path.parent, path.name, f"""name: long copy
relations: [РЫБУ = КОТ, w1 = w2]
model:
  dim: 256
  pipeline:
    - context: {{}}
    - context: {{positions: last, values: tokens, match: prefix, decay: 0.5, steps: 3, hops: 3, threshold: 0.55, fallback: previous, temperature: 0.012}}
    - layer: [{{assoc: {{positions: last}}}}, {{mlp: {{positions: last}}}}]
      repeat: 18
prompts:
  - name: a copy {tokens} tokens back
    text: {" ".join(text)}
    expect: РЫБУ
""")


def test_2000_tokens_and_20_layers_load_within_budget_and_stay_virtual(browser, tmp_path, capsys):
    result = run(long_copy(tmp_path / "long.yaml"))
    p = result.variants[0].prompts[0]
    assert len(p.prompt.tokens) == 2000 and len(result.variants[0].variant.model.pipeline) == 20
    html = write_html(result, tmp_path / "long.html")
    report = Report(browser, html)
    page = report.page
    with capsys.disabled():
        print(f"\n  2000 tokens, 20 layers: {html.stat().st_size / 1e6:.1f} MB, loaded and drawn in {report.load_s:.2f} s")
    assert report.load_s < FIRST_RENDER_S
    assert page.locator("#positions .pos").count() < 80  # only the rows on screen are in the DOM
    weights = p.attention[0].weights  # layer 1: attention over the earlier positions, every position
    for pos in (1500, 1999, 37):
        start = time.perf_counter()
        report.show(pos)
        assert time.perf_counter() - start < 5
        check_row_against_json(report.stage_rows()["0"], weights[pos])
        assert page.locator("#positions .pos").count() < 80
    # the full row on demand: every nonzero weight of position 37, largest first
    report.show(37).click()
    card = page.locator(".stage[data-stage='0']")
    card.locator("button.more").click()
    page.wait_for_selector(".stage[data-stage='0'] .full .entry")
    full = card.locator(".full .entry")
    row = weights[37]
    order = sorted(np.flatnonzero(row), key=lambda c: (-row[c], c))
    assert f"show all {len(order)}" in card.locator("button.more").inner_text() or "show the top" in card.locator("button.more").inner_text()
    first = [(int(e.get_attribute("data-col")), e.locator(".val").inner_text()) for e in full.all()[:10]]
    assert [c for c, _ in first] == order[:10] and all(abs(float(v) - row[c]) < 0.0006 for c, v in first)
    start = time.perf_counter()  # the map of layer 1: 2000 x 2000 weights folded into 480 x 480 pixels
    card.locator("button.mapb").click()
    page.wait_for_function("() => document.querySelector('canvas.map')?.width === 480")
    assert time.perf_counter() - start < 5
    report.screenshot("html-report-2000-tokens.png", capsys)
    report.clean()


def test_full_rows_over_the_budget_are_left_out_and_said(browser, tmp_path):
    html = write_html(run(write(tmp_path, "trace.yaml", TRACE)), tmp_path / "t.html", full_budget=0)
    report = Report(browser, html)
    report.show(13).click()
    more = report.page.locator(".stage button.more").first
    more.click()
    assert "not in this file" in report.page.locator(".full").first.inner_text()
    report.clean()


def test_hostile_names_and_tokens_are_shown_as_written(browser, tmp_path):
    html = write_html(run(write(tmp_path, "h.yaml", HOSTILE)), tmp_path / "h.html")
    report = Report(browser, html)
    page = report.page
    assert page.evaluate("window.pwned") is None
    assert page.locator("header h1 span").first.inner_text() == "</script><script>window.pwned = 1</script>"
    assert "</style><style>body{display:none}</style>" in page.locator("#verdict").inner_text()
    tokens = page.evaluate("() => [...document.querySelectorAll('#positions .pos .tok')].map(e => e.textContent)")
    assert tokens == ["</script><script>window.pwned=3</script>", "<!--", "&amp;", "<b>x</b>", "?"]
    assert page.locator("img").count() == 0 and page.locator("b:text-is('x')").count() == 0
    report.show(4)
    assert "<img/src=x/onerror=window.pwned=2> = </title>" in page.locator(".stage").last.inner_text()
    report.clean()


def test_markup_and_hidden_characters_are_shown_as_escapes(browser, tmp_path):
    html = write_html(run(write(tmp_path, "m.yaml", MARKUP_SCENARIO)), tmp_path / "m.html")
    report = Report(browser, html)
    text = report.page.locator("body").inner_text()
    assert "\x1b" not in text and "\u202e" not in text and "\u200b" not in text
    assert "x\\x1b[2J" in text and "\\u202eevil" in text
    report.clean()


def test_sweep_report_shows_the_json_accuracy_and_margins(browser, tmp_path, capsys):
    html = tmp_path / "s.html"
    r = cli_in_process("sweep", "scenarios/long_context.yaml", "--seeds", 3, "--json", "--html", html)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    report = Report(browser, html, height=700)  # a window that shows only the first histograms
    page = report.page
    for cell in data["cells"]:
        td = page.locator(f"table.grid[data-variant='{cell['variant']}'] td[data-dim='{cell['dim']}']"
                          f"[data-temperature='{cell['temperature']}'] .val")
        assert float(td.inner_text()) == pytest.approx(cell["accuracy"], abs=0.0005)
    rows = page.locator("#prompt-accuracy tr").all()[1:]
    for j, row in enumerate(rows):
        values = [float(v) for v in row.locator("td").all_inner_texts()]
        assert values == pytest.approx([c["prompts"][j]["accuracy"] for c in data["cells"]], abs=0.0005)
    hists = page.locator("canvas.hist")  # drawn as they scroll into view: scroll to the last, then all are drawn
    assert hists.count() == 18 and page.locator("canvas.hist[data-drawn]").count() < 18
    hists.last.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelectorAll('canvas.hist[data-drawn=\"3\"]').length === 18")
    report.screenshot("html-report-sweep-long_context.png", capsys)
    report.clean()


EDGES = [(case, text) for case, text, args in STRICT_JSON_EDGES if args == ["run"]] + [
    ("no-memory-rows", "prompts:\n  - {text: 'a b ?', expect: a}\n"),
    ("one-token-and-no-expectation", "prompts:\n  - {text: a, expect: a, candidates: [a]}\n  - text: b\n"),
]


@pytest.mark.parametrize("case, text", EDGES, ids=[c for c, _ in EDGES])
def test_edge_scenarios_render(browser, tmp_path, case, text):
    """A single candidate (no margin), one name, no memory rows, one token, a prompt that expects nothing."""
    result = run(write(tmp_path, "s.yaml", text))
    report = Report(browser, write_html(result, tmp_path / "s.html"))
    page = report.page
    e = result.variants[0].prompts[0].expectation
    assert page.locator("#verdict .badge").inner_text() == ("PASS" if e.passed else "FAIL") + (
        " (no margin)" if not np.isfinite(e.margin) else f" {e.margin:+.3f}")
    for item in range(1, len(result.variants[0].prompts)):
        page.locator(f"[data-item='{item}']").click()
        page.wait_for_function(f"document.querySelector('#verdict h2').textContent.includes('prompt {item + 1}')")
    report.clean()


SWEEP_EDGES = [(case, text) for case, text, args in STRICT_JSON_EDGES if args[0] == "sweep"]


@pytest.mark.parametrize("case, text", SWEEP_EDGES, ids=[c for c, _ in SWEEP_EDGES])
def test_sweep_edges_render(browser, tmp_path, case, text):
    """Single-candidate prompts (no margin), nothing expected, nothing checked: the accuracies --json has, and no
    error."""
    html = tmp_path / "s.html"
    r = cli_in_process("sweep", write(tmp_path, "s.yaml", text), "--seeds", 2, "--json", "--html", html)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    report = Report(browser, html)
    header = report.page.locator("header .badge").inner_text()
    assert header == ("no checked expectation" if data["accuracy"] is None else f"accuracy {data['accuracy']:.3f}")
    report.clean()


def test_long_tokens_and_stacked_marks_stay_in_their_boxes(browser, tmp_path):
    """A 3000-character name and a letter under 300 combining accents: every token box stays one line high and at
    most 48 characters wide, wherever it is shown."""
    stacked = "a" + "\u0301" * 300
    text = (f'relations:\n  - "{"L" * 3000} = {stacked}"\nprompts:\n  - {{text: "{"L" * 3000} {stacked} ?", '
            f'expect: "{stacked}", name: "{"N" * 2000}"}}\n')
    report = Report(browser, write_html(run(write(tmp_path, "s.yaml", text)), tmp_path / "s.html"))
    report.show(2)
    boxes = report.page.evaluate("() => [...document.querySelectorAll('.tok, .rel, .pname')].map(e => "
                                 "{ const r = e.getBoundingClientRect(); return [r.width, r.height]; })")
    assert len(boxes) > 10 and max(h for _, h in boxes) < 30 and max(w for w, _ in boxes) < 600, boxes
    report.clean()


@pytest.mark.parametrize("scenario", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_scenario_renders_offline(browser, tmp_path, scenario, capsys):
    html = tmp_path / f"{scenario.stem}.html"
    r = cli_in_process("run", scenario, "--html", html)
    assert r.returncode in (0, 1) and html.exists(), r.stderr
    result = run(scenario)
    report = Report(browser, html)
    page = report.page
    first = result.variants[0].prompts[0]
    e = first.expectation
    badge = page.locator("#verdict .badge").inner_text()
    assert badge == f"{'PASS' if e.passed else 'FAIL'} {e.margin:+.3f}"
    assert page.locator(".stage").count() >= 1
    last = len(first.prompt.tokens) - 1
    report.show(last)
    if scenario.stem == "long_context":  # the 200-distractor prompt, locked on the cloze, as a researcher opens it
        page.locator("[data-item='4']").click()
        page.wait_for_function("document.querySelectorAll('#positions .pos').length > 0")
        last = len(result.variants[0].prompts[4].prompt.tokens) - 1
        report.show(last).click()
        assert report.focus() == (last, str(last))
        report.screenshot("html-report-long_context.png", capsys)
    report.clean()
