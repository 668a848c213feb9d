"""The ``expression`` generator: a formula over other data points and time, evaluated by simpleeval, never `eval`.

simpleeval (an optional extra, ``pip install 'modbusd[simulate]'``) walks Python's parsed syntax tree itself and
allows only arithmetic, comparisons, conditionals and the functions given here: no attribute access, no imports,
no builtins, and bounded powers and string sizes. The formula is parsed once, when the generator is made, and every
name in it is checked then: a data point's name, or one of the names below; anything else, and bad syntax, is one
GeneratorError at load time, not an error at every update.

Names: ``t`` (the generator's time in seconds), ``now`` (Unix time), ``pi``, ``e``; functions: the usual math
(``sin cos tan asin acos atan atan2 sqrt exp log log10 floor ceil``), ``abs min max round``, and seeded noise
(``random()`` in 0..1, ``uniform(a, b)``, ``gauss(mu, sigma)``).
"""

import ast
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modbusd.simulate.generators import Generator
from modbusd.simulate.spec import GeneratorError

NAMES = ("t", "now", "pi", "e")
MATH = ("sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sqrt", "exp", "log", "log10", "floor", "ceil")
NOISE = ("random", "uniform", "gauss")
ALLOWED = (
    ast.Expr,
    ast.Expression,
    ast.Module,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.Name,
    ast.Constant,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)
"""The syntax a formula may use, checked when it is made: simpleeval would refuse the rest only when evaluating."""


def _simpleeval() -> Any:
    try:
        import simpleeval
    except ImportError:
        raise GeneratorError("expression generators need simpleeval: pip install 'modbusd[simulate]'") from None
    return simpleeval


@dataclass(slots=True)
class Expression(Generator):
    """`formula` over the data points `read` gives (by name) and the names of the module docstring."""

    formula: str
    read: Callable[[str], object]
    is_point: Callable[[str], bool]
    seed: int | None = None
    _tree: object = field(init=False, repr=False)
    _evaluator: Any = field(init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        simpleeval = _simpleeval()
        self._rng = random.Random(self.seed)
        functions: dict[str, Callable[..., object]] = {name: getattr(math, name) for name in MATH}
        functions |= {"abs": abs, "min": min, "max": max, "round": round, "random": self._rng.random,
                      "uniform": self._rng.uniform,
                      "gauss": self._rng.gauss}  # fmt: skip
        self._evaluator = simpleeval.SimpleEval(functions=functions, names={})
        try:
            self._tree = self._evaluator.parse(self.formula)
        except SyntaxError as exc:
            raise GeneratorError(f"bad syntax: {exc.msg}") from None
        if not self.formula.strip():
            raise GeneratorError("expression: the formula is empty")
        self._check_names()

    def _check_names(self) -> None:
        for node in ast.walk(self._tree):  # type: ignore[arg-type]  # simpleeval's parse gives an ast node
            if not isinstance(node, ALLOWED):
                raise GeneratorError(f"{type(node).__name__.lower()} is not allowed: "
                                     "only numbers, names, arithmetic, comparisons, and/or/not, x if c else y "
                                     "and function calls")  # fmt: skip
            if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and not node.keywords):
                raise GeneratorError("a call names one of the functions, and passes no KEY= arguments")
            if isinstance(node, ast.Name):
                name = node.id
                if name in NAMES or name in self._evaluator.functions or self.is_point(name):
                    continue
                raise GeneratorError(f"unknown name {name!r}: expected a data "
                                     f"point's name, {', '.join(NAMES)} or a function "
                                     f"({', '.join((*MATH, 'abs', 'min', 'max', 'round', *NOISE))})")  # fmt: skip

    def reset(self) -> None:
        self._rng.seed(self.seed)

    def value(self, t: float, wall: float) -> float:
        fixed = {"t": t, "now": wall, "pi": math.pi, "e": math.e}

        def name(node: ast.Name) -> object:
            if node.id in fixed:
                return fixed[node.id]
            return self.read(node.id)

        self._evaluator.names = name
        result = self._evaluator.eval(self.formula, previously_parsed=self._tree)
        if isinstance(result, bool):
            return float(result)
        if not isinstance(result, int | float):
            raise GeneratorError(f"the formula gave {result!r}, not a number")
        return float(result)
