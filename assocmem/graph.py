"""Relation and concept lines (`ОНА = МАША + КАШУ`, `4 -> 5`, `Апрель = 4 + Месяц`) -> records that keep their source line."""
from __future__ import annotations

import re
from dataclasses import dataclass

import networkx as nx

from assocmem.errors import InputError

RELATION_FORMS = "KEY = VALUE [+ VALUE ...] or KEY -> VALUE"
CONCEPT_FORM = "NAME = TERM [+ TERM ...]"
# A term is a name with an optional weight: `Месяц`, `0.5*Месяц`, `-2 * Месяц` (spaces around * allowed).
_WEIGHTED = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\*(.+)$")
_OPERATORS = {"=", "->", "+", "-"}
# Weights a term may carry: |w| in [1e-6, 1e6].  Within it, a sum of terms stays far from float32's range (3e38)
# and far above mem.EPS (1e-12), below which a row counts as zero; outside it, 1e300*A or 1e-300*A would.
MIN_WEIGHT, MAX_WEIGHT = 1e-6, 1e6
# Terms whose weights cancel name by name to less than this share of their total weight sum to (near) zero.
CANCELLED = 1e-6


@dataclass(frozen=True)
class Source:
    """Where a record came from: file, line and the text as written."""

    file: str
    line: int | None
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Term:
    name: str
    weight: float = 1.0

    def __str__(self) -> str:
        return self.name if self.weight == 1.0 else f"{self.weight:g}*{self.name}"


@dataclass(frozen=True)
class Relation:
    """One memory row.  kind "assoc": key row vec(key), value row sum of the value terms.
    kind "rewrite" (`4 -> 5`): value row vec(5) - vec(4), so x + read moves x from key to value."""

    key: tuple[Term, ...]
    value: tuple[Term, ...]
    kind: str
    source: Source

    @property
    def label(self) -> str:
        op = " -> " if self.kind == "rewrite" else " = "
        return _sum_text(self.key) + op + _sum_text(self.value)


@dataclass(frozen=True)
class Concept:
    """A composite hypervector: vec(name) = unit(sum of weight * vec(term))."""

    name: str
    terms: tuple[Term, ...]
    source: Source

    @property
    def label(self) -> str:
        return f"{self.name} = {_sum_text(self.terms)}"


@dataclass(frozen=True)
class Graph:
    relations: tuple[Relation, ...] = ()
    concepts: tuple[Concept, ...] = ()

    def names(self) -> list[str]:
        """Every name the graph mentions, in order of first mention."""
        seen: dict[str, None] = {}
        for r in self.relations:
            for t in r.key + r.value:
                seen.setdefault(t.name)
        for c in self.concepts:
            seen.setdefault(c.name)
            for t in c.terms:
                seen.setdefault(t.name)
        return list(seen)

    def to_networkx(self) -> nx.MultiDiGraph:
        """Relation edges key -> value term (kind "assoc"/"rewrite"); concept edges term -> concept (kind "concept")."""
        g = nx.MultiDiGraph()
        g.add_nodes_from(self.names())
        for r in self.relations:
            for k in r.key:
                for v in r.value:
                    g.add_edge(k.name, v.name, kind=r.kind, weight=v.weight, label=r.label, source=str(r.source))
        for c in self.concepts:
            for t in c.terms:
                g.add_edge(t.name, c.name, kind="concept", weight=t.weight, label=c.label, source=str(c.source))
        return g


def _sum_text(terms) -> str:
    """`A + 0.5*B - C`: a negative weight is written as a minus before the term, `- C`, not `- 1*C`."""
    text = ""
    for i, t in enumerate(terms):
        sign = "-" if t.weight < 0 else "+"
        shown = str(Term(t.name, abs(t.weight)))
        text += (("-" + shown) if sign == "-" else shown) if i == 0 else f" {sign} {shown}"
    return text


def parse_terms(text: str, source: Source, form: str) -> tuple[Term, ...]:
    """`A + 0.5*B - C` -> (Term(A), Term(B, 0.5), Term(C, -1))."""
    words = re.sub(r"\s*\*\s*", "*", text.strip()).split()
    if not words:
        raise InputError(f"relation {source.text!r}: missing value, expected {form}", source.file, source.line)
    terms, sign = [], 1.0
    for i, word in enumerate(words):
        if i % 2 == 1:
            if word not in ("+", "-"):
                raise InputError(f"relation {source.text!r}: expected + or - before {word!r}, expected {form}",
                                 source.file, source.line, "put spaces around + and -")
            sign = 1.0 if word == "+" else -1.0
            continue
        if word in _OPERATORS:
            raise InputError(f"relation {source.text!r}: {word!r} where a name was expected, expected {form}",
                             source.file, source.line)
        weighted = _WEIGHTED.match(word)
        name, weight = (weighted.group(2), float(weighted.group(1))) if weighted else (word, 1.0)
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise InputError(f"weight {weight:g} of {name!r} is outside the range {MIN_WEIGHT:g} to {MAX_WEIGHT:g}",
                             source.file, source.line, "scale the weights of the line together")
        terms.append(Term(name, sign * weight))
    if len(words) % 2 == 0:
        raise InputError(f"relation {source.text!r}: ends with {words[-1]!r}, expected {form}", source.file, source.line)
    net: dict[str, float] = {}
    for t in terms:
        net[t.name] = net.get(t.name, 0.0) + t.weight
    if sum(abs(w) for w in net.values()) <= CANCELLED * sum(abs(t.weight) for t in terms):
        raise InputError(f"{_sum_text(terms)} sums to zero: its terms cancel", source.file, source.line,
                         "a row of zeros reads nothing and matches nothing")
    return tuple(terms)


def parse_relation(text: str, file: str, line: int | None) -> Relation:
    source = Source(str(file), line, text)
    words = text.split()
    ops = [i for i, w in enumerate(words) if w in ("=", "->")]
    if len(ops) != 1:
        wrong = [w for w in words if set(w) <= set("=<>-:") and w not in _OPERATORS]
        what = f"wrong operator {wrong[0]!r}" if wrong else ("more than one = or ->" if ops else "no = or ->")
        raise InputError(f"relation {text!r}: {what}, expected {RELATION_FORMS}", file, line)
    op = ops[0]
    if op == 0:
        raise InputError(f"relation {text!r}: missing key before {words[op]!r}, expected {RELATION_FORMS}", file, line)
    key = parse_terms(" ".join(words[:op]), source, RELATION_FORMS)
    value = parse_terms(" ".join(words[op + 1:]), source, RELATION_FORMS)
    kind = "assoc" if words[op] == "=" else "rewrite"
    if kind == "rewrite" and (len(key) != 1 or len(value) != 1):
        raise InputError(f"relation {text!r}: a rewrite moves one name to one name, expected KEY -> VALUE", file, line)
    if kind == "rewrite" and key[0].name == value[0].name:
        raise InputError(f"relation {text!r}: rewrites a name to itself, so its value row vec(VALUE) - vec(KEY) "
                         "would be zero", file, line)
    return Relation(key, value, kind, source)


def parse_concept(text: str, file: str, line: int | None) -> Concept:
    source = Source(str(file), line, text)
    name, eq, rest = text.partition("=")
    if not eq or "->" in text:
        raise InputError(f"concept {text!r}: expected {CONCEPT_FORM}", file, line)
    if len(name.split()) != 1:
        raise InputError(f"concept {text!r}: the left side must be one name, expected {CONCEPT_FORM}", file, line)
    if rest.lstrip().startswith("="):
        raise InputError(f"concept {text!r}: wrong operator '==', expected {CONCEPT_FORM}", file, line)
    return Concept(name.strip(), parse_terms(rest, source, CONCEPT_FORM), source)


def concept_order(concepts) -> list[Concept]:
    """Concepts sorted so every concept comes after the concepts it is built from; a cycle is an InputError."""
    by_name: dict[str, Concept] = {}
    for c in concepts:
        if c.name in by_name:
            first = by_name[c.name].source
            raise InputError(f"concept {c.name!r} is defined twice (first at {first})", c.source.file, c.source.line)
        by_name[c.name] = c
    g = nx.DiGraph()
    g.add_nodes_from(by_name)
    g.add_edges_from((t.name, c.name) for c in by_name.values() for t in c.terms if t.name in by_name)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return [by_name[n] for n in nx.topological_sort(g)]
    path = " -> ".join([cycle[0][0]] + [v for _, v in cycle])
    where = by_name[cycle[0][1]].source
    raise InputError(f"concept cycle {path}", where.file, where.line, "a concept cannot be built from itself")
