"""Scenario and graph YAML -> frozen, validated dataclasses; every mistake is an InputError with file and line."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from assocmem import yamldoc
from assocmem.errors import InputError, did_you_mean
from assocmem.graph import Graph, concept_order, parse_concept, parse_relation
from assocmem.mem import SIMILARITIES
from assocmem.model import DTYPES, KINDS, MODEL_KEYS, RECIPES, Layer, Model, Option, Stage

SCENARIO_KEYS = ("name", "description", "graph", "relations", "concepts", "tokenizer", "model", "variants", "prompts",
                 "patch")
PATCH_KEYS = ("from", "to", "layers", "positions")
VARIANT_KEYS = ("description", "check") + MODEL_KEYS
GRAPH_KEYS = ("description", "relations", "concepts")
PROMPT_KEYS = ("text", "expect", "candidates", "name")
TOKENIZERS = ("words", "chars")
GRAPH_SUFFIXES = (".yaml", ".yml")
MAX_DIM = 1_000_000
MAX_LAYERS = 10_000


@dataclass(frozen=True)
class Prompt:
    text: str
    tokens: tuple[str, ...]
    expect: str | None = None
    candidates: tuple[str, ...] | None = None  # None: the whole vocabulary competes
    name: str | None = None
    line: int | None = None

    @property
    def label(self) -> str:
        return self.name or " ".join(self.tokens)


@dataclass(frozen=True)
class PatchSpec:
    """A `patch:` entry: run `to` with its stream at (layer, position) taken from `from`'s (patching.py).
    from_ and to name prompts (a name, a number from 1, or the text); layers and positions: None for all."""

    from_: str
    to: str
    layers: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    line: int | None = None


@dataclass(frozen=True)
class Variant:
    """A named model to run the prompts through.  `check` False: its expectations are shown, not enforced."""

    name: str
    model: Model
    check: bool = True
    description: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    graph: Graph
    variants: tuple[Variant, ...]   # the `model` alone, or each entry of `variants` laid over it
    prompts: tuple[Prompt, ...]
    tokenizer: str = "words"
    description: str = ""
    patches: tuple[PatchSpec, ...] = ()

    @property
    def model(self) -> Model:
        return self.variants[0].model

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the scenario was read from, itself and its graph's: what an output must never replace."""
        sources = {r.source.file for r in self.graph.relations} | {c.source.file for c in self.graph.concepts}
        return (Path(self.path),) + tuple(Path(f) for f in sorted(sources) if f and Path(f).exists())

    def vocabulary_names(self) -> list[str]:
        names = self.graph.names()
        for p in self.prompts:
            names += list(p.tokens)
        return list(dict.fromkeys(names))


def load_graph(path: Path | str) -> Graph:
    return _graph_file(yamldoc.load(path))


def _graph_file(doc) -> Graph:
    data = _mapping(doc, (), "a graph file")
    _check_keys(doc, (), data, GRAPH_KEYS)
    return _graph_from(doc, data)


def load_graph_or_scenario(path: Path | str, **overrides) -> tuple[Graph, Model, list[str]]:
    """A graph file, or a scenario (a file with prompts): its graph, its model with the overrides (dim, seed,
    temperature) laid over it, checked as a scenario's is, and the names its prompts add (none for a graph)."""
    doc = yamldoc.load(path)
    if isinstance(doc.data, dict) and "prompts" in doc.data:
        scenario = load_scenario(path, **overrides)
        return scenario.graph, scenario.model, scenario.vocabulary_names()
    graph = _graph_file(doc)
    model = replace(Model(), **{k: v for k, v in overrides.items() if v is not None})
    _check_model(doc, model)
    return graph, model, []


def load_scenario(path: Path | str, **overrides) -> Scenario:
    """Load and validate a scenario; overrides (dim, seed, temperature, similarity, dtype) replace model values."""
    doc = yamldoc.load(path)
    data = _mapping(doc, (), "a scenario file")
    _check_keys(doc, (), data, SCENARIO_KEYS)
    graph = Graph()
    if "graph" in data:
        ref = _string(doc, ("graph",), data["graph"])
        graph_path = Path(os.path.normpath(doc.path.parent / ref))
        if not (graph_path.exists() or graph_path.is_symlink()):
            raise doc.error(("graph",), f"graph file {ref!r} not found (resolved to {graph_path.resolve()})")
        if graph_path.suffix.lower() not in GRAPH_SUFFIXES:  # not some other file, whose lines an error would show
            raise doc.error(("graph",), f"graph file {ref!r} must end in {' or '.join(GRAPH_SUFFIXES)}")
        graph = load_graph(graph_path)
    inline = _graph_from(doc, data)
    graph = Graph(graph.relations + inline.relations, graph.concepts + inline.concepts)
    concept_order(graph.concepts)  # a cycle or a double definition is an error now, not at run time
    tokenizer = _choice(doc, ("tokenizer",), data.get("tokenizer", "words"), TOKENIZERS)
    model = _model(doc, ("model",), data.get("model", {}), MODEL_KEYS)
    variants = _variants(doc, data.get("variants"), model)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    variants = tuple(replace(v, model=replace(v.model, **overrides)) for v in variants)
    for v in variants:
        _check_model(doc, v.model)
    prompts = _prompts(doc, data.get("prompts"), tokenizer)
    name = _string(doc, ("name",), data["name"]) if "name" in data else doc.path.stem
    description = _string(doc, ("description",), data["description"]) if data.get("description") else ""
    scenario = Scenario(name, doc.path, graph, variants, prompts, tokenizer, description, _patches(doc, data.get("patch")))
    _check_tokens(doc, scenario)
    return scenario


# ----------------------------------------------------------------------------- pieces


def _mapping(doc, where, what):
    value = _get(doc.data, where)
    if value is None and where == ():
        raise doc.error(where, f"empty file, expected {what} (a mapping)")
    if not isinstance(value, dict):
        raise doc.error(where, f"expected a mapping for {what}, got {_kind(value)}")
    return value


def _get(data, where):
    for k in where:
        data = data[k]
    return data


def _kind(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(type(value), type(value).__name__)


def _check_keys(doc, where, data, valid):
    for key in data:
        if key not in valid:
            hint = did_you_mean(key, valid) or "valid keys: " + ", ".join(valid)
            raise doc.error(where + (key,), f"unknown key {yamldoc.name_or_not(key)}", hint)


def _string(doc, where, value) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise doc.error(where, f"expected a string, got {_kind(value)}")
    return doc.raw.get(where, str(value))


def _choice(doc, where, value, choices) -> str:
    text = _string(doc, where, value)
    if text not in choices:
        raise doc.error(where, f"{where[-1]} {text!r} is not one of {', '.join(choices)}", did_you_mean(text, choices))
    return text


def _number(doc, where, value, kind=float, positive=True):
    if kind is float and isinstance(value, str) and "_" not in value:
        try:  # YAML 1.1 reads `1e-3` (no dot) as a string; it is the number as written
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise doc.error(where, f"{where[-1]} must be {'an integer' if kind is int else 'a number'}, got {doc.raw.get(where, value)!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise doc.error(where, f"{where[-1]} must be a positive number, got {value}")
    return kind(value)


def _graph_from(doc, data) -> Graph:
    relations, concepts = [], []
    for key, parse, out in (("relations", parse_relation, relations), ("concepts", parse_concept, concepts)):
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise doc.error((key,), f"{key} must be a list of lines like {'ОНА = МАША + КАШУ' if key == 'relations' else 'Апрель = 4 + Месяц'}, got {_kind(items)}")
        for i, item in enumerate(items):
            text = _string(doc, (key, i), item)
            out.append(parse(text, doc.path, doc.line((key, i))))
    return Graph(tuple(relations), tuple(concepts))


def _model(doc, where, data, valid, base: Model | None = None) -> Model:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise doc.error(where, f"{where[-1]} must be a mapping, got {_kind(data)}")
    _check_keys(doc, where, data, valid)
    values = {}
    for key, kind in (("dim", int), ("seed", int), ("temperature", float)):
        if key in data:
            values[key] = _number(doc, where + (key,), data[key], kind, positive=key != "seed")
    if "similarity" in data:
        values["similarity"] = _choice(doc, where + ("similarity",), data["similarity"], SIMILARITIES)
    if "dtype" in data:
        values["dtype"] = _choice(doc, where + ("dtype",), data["dtype"], DTYPES)
    if "pipeline" in data:
        values["pipeline"] = _pipeline(doc, where + ("pipeline",), data["pipeline"])
    return replace(base, **values) if base else Model(**values)


def _variants(doc, data, model: Model) -> tuple[Variant, ...]:
    """`variants: {name: {model keys..., check, description}}`, each laid over `model`."""
    if data is None:
        return (Variant("model", model),)
    if not isinstance(data, dict) or not data:
        raise doc.error(("variants",), "variants must be a mapping of names to model settings",
                        "e.g. variants: {plus: {pipeline: [...]}}")
    out = []
    for name, body in data.items():
        where = ("variants", name)
        body = body or {}
        if not isinstance(body, dict):
            raise doc.error(where, f"variant {name!r} must be a mapping, got {_kind(body)}")
        check = body.get("check", True)
        if not isinstance(check, bool):
            raise doc.error(where + ("check",), f"check must be true or false, got {doc.raw.get(where + ('check',))!r}")
        description = _string(doc, where + ("description",), body["description"]) if body.get("description") else ""
        settings = {k: v for k, v in body.items() if k not in ("check", "description")}
        _check_keys(doc, where, body, VARIANT_KEYS)
        out.append(Variant(str(name), _model(doc, where, settings, VARIANT_KEYS, model), check, description))
    return tuple(out)


def _check_model(doc, model: Model):
    """Checks that also cover command-line overrides."""
    if not (0 < model.dim <= MAX_DIM):
        raise InputError(f"dim must be between 1 and {MAX_DIM}, got {model.dim}", doc.path, doc.line(("model", "dim")))
    if not (model.temperature > 0 and math.isfinite(model.temperature)):
        raise InputError(f"temperature must be a positive number, got {model.temperature}", doc.path,
                         doc.line(("model", "temperature")))
    if model.seed < 0:
        raise InputError(f"seed must be 0 or more, got {model.seed}", doc.path, doc.line(("model", "seed")))


def _pipeline(doc, where, data) -> tuple[Layer, ...]:
    """A list of entries: `kind`, `{kind: {options}}`, or `{layer: [stage, ...], repeat: n}`; `repeat` makes n layers.
    Or the name of a built-in recipe (model.RECIPES): `pipeline: feedback10`."""
    if isinstance(data, str):
        if data not in RECIPES:
            raise doc.error(where, f"no built-in pipeline named {data!r}",
                            did_you_mean(data, RECIPES) or "built-in pipelines: " + ", ".join(RECIPES))
        return RECIPES[data]()
    if not isinstance(data, list) or not data:
        raise doc.error(where, "pipeline must be a non-empty list of layers", "e.g. [feedback, assoc] or - layer: [assoc, context, mlp]")
    layers: list[Layer] = []
    for i, entry in enumerate(data):
        here = where + (i,)
        if isinstance(entry, dict) and "layer" in entry:
            _check_keys(doc, here, entry, ("layer", "repeat"))
            repeat = _number(doc, here + ("repeat",), entry["repeat"], int) if "repeat" in entry else 1
            items = entry["layer"]
            if not isinstance(items, list) or not items:
                raise doc.error(here + ("layer",), "layer must be a non-empty list of stages")
            stages = []
            for j, item in enumerate(items):
                stage, rep = _stage(doc, here + ("layer", j), item)
                if rep != 1:
                    raise doc.error(here + ("layer", j), "repeat inside a layer is not allowed", "put repeat beside layer:")
                stages.append(stage)
            layers += [Layer(tuple(stages))] * repeat
        else:
            stage, repeat = _stage(doc, here, entry)
            layers += [Layer((stage,))] * repeat
        if len(layers) > MAX_LAYERS:
            raise doc.error(here, f"more than {MAX_LAYERS} layers")
    return tuple(layers)


def _stage(doc, where, entry) -> tuple[Stage, int]:
    """`kind` or `{kind: {options}}`; the options, their choices and types are those model.KINDS gives the kind."""
    if isinstance(entry, str):
        kind, options = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        kind, options = next(iter(entry.items()))
        options = options or {}
        if not isinstance(options, dict):
            raise doc.error(where, f"options of {kind!r} must be a mapping, got {_kind(options)}")
    else:
        raise doc.error(where, "a stage is a kind name or {kind: {options}}", "kinds: " + ", ".join(KINDS))
    if kind not in KINDS:
        raise doc.error(where, f"unknown layer kind {kind!r}", did_you_mean(kind, tuple(KINDS) + ("layer",)) or "kinds: " + ", ".join(KINDS))
    where_opts = where + (kind,)
    spec = KINDS[kind]
    _check_keys(doc, where_opts, options, ("repeat",) + spec.option_names)
    values = {key: _option(doc, where_opts + (key,), value, spec.option(key))
              for key, value in options.items() if key != "repeat"}
    stage = Stage(kind, **values)
    for key in values:
        needs = spec.option(key).needs
        if needs and (stage.get(needs[0]) is None if needs[1] is None else stage.get(needs[0]) != needs[1]):
            wanted = f"{needs[0]}: {needs[1]}" if needs[1] is not None else f"a {needs[0]}"
            raise doc.error(where_opts + (key,), f"{key} only applies with {wanted}", f"add {wanted} to this stage")
    repeat = _number(doc, where_opts + ("repeat",), options["repeat"], int) if "repeat" in options else 1
    return stage, repeat


def _option(doc, where, value, option: Option):
    if option.choices:
        return _choice(doc, where, value, option.choices)
    if option.type is str:
        return _string(doc, where, value)
    number = _number(doc, where, value, option.type)
    if option.maximum is not None and number > option.maximum:
        raise doc.error(where, f"{where[-1]} must be at most {option.maximum:g}, got {number}")
    return number


MAX_NUMBERS = 10**6  # numbers a list of layers or positions names at most (no range is expanded past it)


def parse_numbers(text: str | None, option: str, least: int) -> tuple[int, ...] | None:
    """`1,2` or `0-8,12`: whole numbers from `least`, each at most 10^6, at most MAX_NUMBERS in all (no range is
    expanded past that).  The syntax of --layer and --positions, and of a patch: entry's layers and positions
    written as a string."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        a, dash, b = part.strip().partition("-")
        digits = lambda x: x.isascii() and x.isdigit()  # noqa: E731  (not ٣ or １: str.isdigit takes every script's)
        if not (digits(a) and (not dash or digits(b))):
            raise InputError(f"{option} must be numbers from {least} or ranges like {least}-{least + 8}, separated by "
                             f"commas, got {text!r}")
        if len(a) > 7 or len(b) > 7 or int(b or a) > 10**6:
            raise InputError(f"{option}: {part.strip()!r} goes past 10^6", hint="name the numbers that exist")
        lo, hi = int(a), int(b) if dash else int(a)
        if lo < least or hi < lo:
            raise InputError(f"{option}: {part.strip()!r} is not a range of numbers from {least}")
        out += range(lo, hi + 1)
        if len(out) > MAX_NUMBERS:
            raise InputError(f"{option} names more than a million numbers")
    return tuple(out)


def _patches(doc, data) -> tuple[PatchSpec, ...]:
    """`patch: [{from: PROMPT, to: PROMPT, layers: [1, 2], positions: [6]}]` (layers from 1, positions from 0); a
    layers or positions entry may also be a string as --layer and --positions take it: `positions: 0-8` or `"0-8,12"`,
    alone or as items of the list."""
    if data is None:
        return ()
    if not isinstance(data, list) or not data:
        raise doc.error(("patch",), "patch must be a non-empty list of {from: PROMPT, to: PROMPT}",
                        "e.g. patch: [{from: 1, to: 2}]")
    out = []
    for i, item in enumerate(data):
        here = ("patch", i)
        if not isinstance(item, dict):
            raise doc.error(here, f"a patch entry must be a mapping, got {_kind(item)}", "e.g. {from: 1, to: 2}")
        _check_keys(doc, here, item, PATCH_KEYS)
        for key in ("from", "to"):
            if key not in item:
                raise doc.error(here, f"patch entry has no {key}", "name a prompt by its name, number (from 1) or text")
        lists = {}
        for key, least in (("layers", 1), ("positions", 0)):
            if key not in item:
                continue
            raw = item[key] if isinstance(item[key], list) else [item[key]]
            if not raw:
                raise doc.error(here + (key,), f"{key} must not be empty (leave it out for all)")
            numbers = []
            for j, v in enumerate(raw):
                where = here + (key,) + ((j,) if isinstance(item[key], list) else ())
                if isinstance(v, str):
                    try:
                        numbers += parse_numbers(v, key, least)
                    except InputError as err:
                        raise doc.error(where, err.message, err.hint) from None
                elif isinstance(v, bool) or not isinstance(v, int) or v < least:
                    raise doc.error(where, f"{key} must be whole numbers from {least} or ranges like {least}-{least + 8}"
                                           f", got {doc.raw.get(where, v)!r}")
                elif v > 10**6:  # as parse_numbers has it
                    raise doc.error(where, f"{key}: {doc.raw.get(where, v)!r} goes past 10^6", "name the numbers that exist")
                else:
                    numbers.append(v)
                if len(numbers) > MAX_NUMBERS:
                    raise doc.error(where, f"{key} names more than a million numbers")
            lists[key] = tuple(numbers)
        out.append(PatchSpec(_string(doc, here + ("from",), item["from"]), _string(doc, here + ("to",), item["to"]),
                             lists.get("layers"), lists.get("positions"), doc.line(here)))
    return tuple(out)


def tokenize(text: str, tokenizer: str) -> tuple[str, ...]:
    return tuple(text) if tokenizer == "chars" else tuple(text.split())


def _prompts(doc, data, tokenizer) -> tuple[Prompt, ...]:
    if data is None:
        raise doc.error((), "no prompts", "add prompts: with at least one {text: ...}")
    if not isinstance(data, list) or not data:
        raise doc.error(("prompts",), "prompts must be a non-empty list")
    prompts = []
    for i, item in enumerate(data):
        here = ("prompts", i)
        if not isinstance(item, dict):
            item = {"text": item}
            doc.raw.setdefault(here + ("text",), doc.raw.get(here))
            doc.lines.setdefault(here + ("text",), doc.line(here))
        _check_keys(doc, here, item, PROMPT_KEYS)
        if "text" not in item:
            raise doc.error(here, "prompt has no text")
        text = _string(doc, here + ("text",), item["text"])
        tokens = tokenize(text, tokenizer)
        if not tokens:
            raise doc.error(here + ("text",), "empty prompt")
        expect = _string(doc, here + ("expect",), item["expect"]) if "expect" in item else None
        candidates = None
        if "candidates" in item:
            raw = item["candidates"]
            if not isinstance(raw, list) or not raw:
                raise doc.error(here + ("candidates",), "candidates must be a non-empty list of tokens")
            candidates = tuple(_string(doc, here + ("candidates", j), c) for j, c in enumerate(raw))
            for j, c in enumerate(candidates):
                if c in candidates[:j]:  # a second copy would compete with itself: its margin would be 0, a FAIL
                    raise doc.error(here + ("candidates", j), f"candidate {c!r} is listed twice", "list each token once")
            if expect is not None and expect not in candidates:
                raise doc.error(here + ("expect",), f"expect {expect!r} is not among the candidates", "add it to candidates")
        name = _string(doc, here + ("name",), item["name"]) if "name" in item else None
        prompts.append(Prompt(text, tokens, expect, candidates, name, doc.line(here)))
    return tuple(prompts)


def _check_tokens(doc, scenario: Scenario):
    vocab = scenario.vocabulary_names() + [c.name for c in scenario.graph.concepts]
    for i, p in enumerate(scenario.prompts):
        if p.expect is not None and not p.candidates and p.expect == p.tokens[-1]:
            raise doc.error(("prompts", i, "expect"), f"expect {p.expect!r} is the prompt's last token, which the "
                            "readout leaves out of the candidates (it predicts what belongs at the last position)",
                            "end the prompt with a cloze such as `?`, or list candidates to include it")
        for key, names in (("expect", [p.expect] if p.expect else []), ("candidates", p.candidates or [])):
            for j, n in enumerate(names):
                if n not in vocab:
                    where = ("prompts", i, key) + ((j,) if key == "candidates" else ())
                    raise doc.error(where, f"{key} token {n!r} is not in the vocabulary",
                                    did_you_mean(n, vocab) or "it must appear in a relation, a concept or a prompt")
