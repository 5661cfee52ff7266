"""The model: Stage, Layer, Model, the default recipe, and the table of layer kinds that everything else reads."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable

POSITIONS = ("all", "last", "before_last")
DTYPES = ("float64", "float32")

# What a stage's weights are over: one column per memory row, or one per position of the prompt.
# Each entry: (what indexes a column, what the weights mean), read by the report, the plots, JSON and budget.py.
COLUMNS = {
    "memory": ("memory", "attention over the memory rows"),
    "positions": ("positions", "attention over the earlier positions"),
    "averaging": ("positions", "averaging weights over the earlier positions"),
}


@dataclass(frozen=True)
class Option:
    """One option of a layer kind, as a scenario writes it: `{feedback: {window: 1}}`."""

    name: str
    type: type                      # int, float or str
    default: object
    choices: tuple[str, ...] = ()   # for str options: the values allowed
    help: str = ""
    maximum: float | None = None    # numbers are positive, and at most this when set
    show: Callable[[object], str] | None = None  # how a stage label shows a value (default: name=value)
    always: bool = False            # shown in the label even at its default
    needs: tuple[str, object] | None = None  # (option, value) it only means something with; value None: any value set

    def label(self, value) -> str | None:
        """The option in a stage label, or None where it stays at its default."""
        if value == self.default and not self.always:
            return None
        return self.show(value) if self.show else f"{self.name}={value}"


@dataclass(frozen=True)
class Kind:
    """One layer kind: what it does, its options, what its weights are over and which Backend method runs it."""

    name: str
    update: str                     # what it does to position i, as the README writes it
    options: tuple[Option, ...]
    columns: str                    # a key of COLUMNS
    method: str                     # the Backend method that runs a stage of this kind on a batch
    memory: tuple[str, str] | None = None  # memory reads: which compiled arrays are its keys and its values
    repeatable: bool = False        # a run of identical one-stage layers may go to the backend as one call

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)


_POSITIONS = Option("positions", str, "all", POSITIONS, "which positions are updated: all, the last, or all but the last",
                    show=lambda v: v.replace("_", " "))
_TEMPERATURE = Option("temperature", float, None, help="this stage's softmax temperature (default: the model's)",
                      show=lambda v: f"T={v:g}")

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("assoc", "x_i += mem(x_i, K, V)", (_POSITIONS, _TEMPERATURE), columns="memory", method="static",
         memory=("keys", "values")),
    Kind("context", "x_i += mem(x_i, X[:i], X[:i])",
         (Option("values", str, "stream", ("stream", "tokens"),
                 "values are the stream rows, or the tokens' own vectors (keys are the stream either way)"),
          Option("match", str, "stream", ("stream", "prefix"),
                 "what is compared: row i with the earlier rows, or the rows before i with the rows before each "
                 "earlier position (layers.prefixes), so a position reads what followed the same context"),
          Option("decay", float, 0.5, help="prefix: the weight of each step back, and of each further step's read",
                 maximum=1.0, needs=("match", "prefix")),
          Option("steps", int, 1, help="prefix: reads in a row, each one position further on", maximum=16, needs=("match", "prefix")),
          Option("hops", int, 1, help="prefix: also compose 2..hops reads through the rows before i (in-context "
                                      "multi-hop: layers.chain_reads)", maximum=8, needs=("match", "prefix")),
          Option("threshold", float, None, help="prefix: a null slot with this similarity; a read that matches "
                                                "nothing better reads nothing", maximum=1.0, needs=("match", "prefix")),
          Option("fallback", str, "none", ("none", "previous"),
                 "prefix: what the null slot's weight of the first read reads instead: nothing, or the position "
                 "before (so `X ?` asks the memory about X)", needs=("threshold", None)),
          _POSITIONS, _TEMPERATURE), columns="positions", method="context"),
    Kind("mlp", "x_i += mem(x_i, V, K)", (_POSITIONS, _TEMPERATURE), columns="memory", method="static",
         memory=("values", "keys")),
    Kind("feedback", "x_i = RMSnorm(x_i − mean(X[:i]))",
         (Option("sign", str, "minus", ("minus", "plus"), "x_i - mean (error feedback) or x_i + mean (averaging)",
                 show=lambda v: "x-mean" if v == "minus" else "x+mean", always=True),
          Option("norm", str, "rms", ("rms", "none"), "RMSnorm after the update, or none",
                 show=lambda v: "no norm"),
          Option("window", int, None, help="the mean is over the last `window` rows instead of all of X[:i]"),
          _POSITIONS), columns="averaging", method="feedback", repeatable=True),
)}


@dataclass(frozen=True, init=False)
class Stage:
    """One read of one kind, holding every option of its kind (defaults from KINDS filled in).

    >>> s = Stage("feedback", window=1)
    >>> s.window, s.sign, s.label
    (1, 'minus', 'feedback(x-mean, window=1)')
    >>> Stage("context", positions="last", values="tokens").label
    'context(values=tokens, last)'
    """

    kind: str
    options: tuple[tuple[str, object], ...]  # (name, value) for every option of the kind, in the table's order

    def __init__(self, kind: str, **options):
        if kind not in KINDS:
            raise ValueError(f"unknown layer kind {kind!r}; kinds: {', '.join(KINDS)}")
        spec = KINDS[kind]
        unknown = set(options) - set(spec.option_names)
        if unknown:
            raise TypeError(f"{kind} has no option {', '.join(sorted(unknown))}; options: {', '.join(spec.option_names)}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "options", tuple((o.name, options.get(o.name, o.default)) for o in spec.options))

    def __getattr__(self, name: str):
        """An option by name: stage.window, stage.values."""
        for key, value in self.__dict__.get("options", ()):
            if key == name:
                return value
        raise AttributeError(f"{self.__dict__.get('kind', 'a')} stage has no option {name!r}")

    def get(self, name: str, default=None):
        """An option's value, or `default` where this kind has no such option (feedback has no temperature)."""
        return dict(self.options).get(name, default)

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]

    @property
    def label(self) -> str:
        shown = [o.label(value) for o, (_, value) in zip(self.spec.options, self.options)]
        shown = [s for s in shown if s is not None]
        return self.kind + (f"({', '.join(shown)})" if shown else "")

    def __repr__(self) -> str:
        changed = [f"{k}={v!r}" for o, (k, v) in zip(self.spec.options, self.options) if v != o.default]
        return f"Stage({', '.join([repr(self.kind)] + changed)})"


@dataclass(frozen=True)
class Layer:
    """Stages applied one after the other; the logit lens looks after every layer."""

    stages: tuple[Stage, ...]

    @property
    def label(self) -> str:
        return " → ".join(s.label for s in self.stages)


def default_pipeline() -> tuple[Layer, ...]:
    """The default recipe: at the last position, an induction read by prefix, then the associative memory.

    Layer 1 compares the rows before the cloze with the rows before every earlier position (each step back
    weighs decay = 0.5 and is bound by one more roll, so the match is on the ordered prefix and never thins out
    with length) and reads the token that stood after the best match; two more steps read the tokens that
    followed it, at weights 0.5 and 0.25, so a cue one or two words further on still reaches the memory.  A
    null slot at cosine 0.55 sits between a one-token match (about 0.75) and chance (about 0 ± 0.1 over 2000
    positions); where it wins, the read falls back to the token before the cloze, so `X ?` asks about X.
    T = 0.012 separates a three-token match from a two-token one (a cosine 0.047 apart: e^3.9).  hops = 3 adds
    chains of two and three reads through the tokens before the cloze (layers.chain_reads): in
    `Барак жена Мишель . Мишель родилась 1964 . Барак жена родилась ?` they read Мишель after `Барак жена`,
    then 1964 after `Мишель родилась`; a chain that finds nothing adds nothing.
    Layer 2 maps what was found through the memory (ВКУСНАЯ -> КАШУ).

    >>> [layer.label for layer in default_pipeline()]
    ['context(values=tokens, match=prefix, steps=3, hops=3, threshold=0.55, fallback=previous, last, T=0.012)', 'assoc(last)']
    """
    induction = Stage("context", positions="last", values="tokens", match="prefix", decay=0.5, steps=3, hops=3,
                      threshold=0.55, fallback="previous", temperature=0.012)
    return (Layer((induction,)), Layer((Stage("assoc", positions="last"),)))


def feedback10_pipeline() -> tuple[Layer, ...]:
    """The recipe before 0.2 (kept for comparison, `pipeline: feedback10`): ten error-feedback layers, then at
    the last position a context read with the tokens' own vectors as values, then the memory."""
    feedback = tuple(Layer((Stage("feedback"),)) for _ in range(10))
    readout = Layer((Stage("context", positions="last", values="tokens"), Stage("assoc", positions="last")))
    return feedback + (readout,)


def posts_pipeline() -> tuple[Layer, ...]:
    """The posts' own pipeline (scenarios/pronoun_seed.yaml, `pipeline: posts`): two layers of assoc -> context ->
    mlp over every position but the last, then one at the last, every read at T = 0.1."""
    def layer(positions):
        return Layer(tuple(Stage(kind, positions=positions, temperature=0.1) for kind in ("assoc", "context", "mlp")))
    return (layer("before_last"), layer("before_last"), layer("last"))


# Pipelines a scenario may name instead of listing layers (`pipeline: feedback10`), or --pipeline on the command line.
RECIPES = {"default": default_pipeline, "feedback10": feedback10_pipeline, "posts": posts_pipeline}


@dataclass(frozen=True)
class Model:
    dim: int = 1000              # d: random unit vectors of d = 1000 overlap by ~1/sqrt(d) = 0.03
    seed: int = 0
    temperature: float = 0.05    # softmax(cos / 0.05): a cosine of 1 beats noise of 0.03 by e^19
    similarity: str = "cosine"   # cosine: scale-free, so RMSnorm gain and value sums do not change scores
    dtype: str = "float64"
    pipeline: tuple[Layer, ...] = field(default_factory=default_pipeline)


MODEL_KEYS = tuple(f.name for f in fields(Model))  # what a `model:` section, or a variant, may set
