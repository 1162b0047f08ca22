'''Expression language for ``ExpressionRouterRule`` (language ``powerFx``).

Azure Job Router evaluates rule expressions with Microsoft Power Fx. We implement the
subset that routing rules actually use, with a Lark LALR grammar, so rules behave the
same way here as they do in the hosted service. This module is plain Python (no Django)
so it can be unit-tested on its own; end-user documentation is in ``docs/expressions.md``.

Usage::

    expr = compile_expression('If(job.Tier = "Gold", 10, 1)')
    expr.evaluate(job={"Tier": "Gold"})            # -> 10

The language
------------
Literals
    Numbers ``10``, ``2.5``, ``.5``, ``1e3``; strings in double quotes, where a quote is
    written twice: ``"say ""hi"""``; ``true`` / ``false`` (any case).
Labels
    ``job.<label>`` and ``worker.<label>``. A label whose name is not a plain identifier is
    written as a single-quoted identifier: ``job.'Some-Skill'`` (a quote inside is doubled).
    Label keys are case-sensitive; the words ``job`` and ``worker`` are not. A missing label
    is Blank (Python ``None``).
Comparison
    ``=  <>  <  <=  >  >=`` (left-associative). ``=``/``<>`` are true equality: Blank equals
    only Blank, a number never equals a string, a boolean never equals a number. Ordering
    (``< <= > >=``) is defined only between two numbers or two strings (ordinal,
    case-sensitive); any other pairing, including anything with Blank or a boolean, is false.
Logic
    ``And``/``&&``, ``Or``/``||``, ``Not``/``!`` (keywords in any case), and the function forms
    ``And(a, b, ...)``, ``Or(a, b, ...)``, ``Not(a)``. They short-circuit and return booleans.
    Truthiness: Blank and ``""`` are false; numbers are true unless zero; the strings
    ``"true"``/``"false"`` (any case) are accepted; any other string is an error.
Arithmetic
    ``+ - * /``, unary ``-``, parentheses; ``&`` joins text (Blank joins as ``""``). Blank is 0
    in arithmetic. Text or booleans in arithmetic are an error (use ``Value()``). An integral
    result of two integers is an ``int`` (``6 / 3`` is ``2``); otherwise a ``float``.
Functions (any case)
    ``If(cond, then[, else])`` and ``If(c1, v1, c2, v2, ..., [else])`` (no match and no else
    gives Blank), ``IsBlank(x)`` (true for Blank and ``""``), ``Blank()``, ``Abs(x)``,
    ``Min(a, ...)``/``Max(a, ...)`` (Blank arguments are ignored), ``Text(x)``, ``Value(x)``.
Precedence, lowest first
    ``Or ||`` < ``And &&`` < ``Not !`` < comparison < ``&`` < ``+ -`` < ``* /`` < unary ``-``.
    So ``Not job.a = 1`` means ``Not (job.a = 1)``.

Errors
------
Every problem is an :class:`ExpressionError` (a ``ValueError``). Syntax errors, unknown
functions and wrong argument counts are raised by :func:`compile_expression`; type errors
and division by zero by :meth:`CompiledExpression.evaluate`. Both carry the 0-based
``position`` and 1-based ``line``/``column`` of the offending text.

Limits (``routing.limits``)
---------------------------
An expression has at most 10,000 characters and 2,000 nodes, a number literal at most 100
characters (and must fit a double); these are compile errors. Evaluation visits each node at
most once (there are no loops), so the node bound is also its step budget; during an evaluation
any text is at most 64 Ki characters, all ``&`` together build at most 1 Mi characters, and a
number's magnitude stays within 1e300 ("Text too long", "Numeric overflow"). Error messages
quote values cut to 80 characters. So a rule that concatenates a label 200 times fails in
microseconds with a short message instead of building megabytes.
'''

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal
from typing import Any, Callable, Mapping, Sequence

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from routing import limits

__all__ = ["CompiledExpression", "ExpressionError", "compile_expression"]


# --------------------------------------------------------------------------- errors


class ExpressionError(ValueError):
    """Syntax or evaluation error in a routing expression.

    ``message`` is the headline ("Syntax error", "Division by zero", ...), ``detail`` the
    optional explanation. ``position`` is a 0-based character offset into ``source``;
    ``line`` and ``column`` are 1-based. All three are ``None`` when no position applies.
    """

    def __init__(
        self,
        message: str,
        *,
        position: int | None = None,
        source: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.message = message
        self.detail = detail
        self.position = position
        self.source = source
        self.line: int | None = None
        self.column: int | None = None
        if position is not None and source is not None:
            self.line, self.column = _line_column(source, position)
        super().__init__(self._format())

    def _format(self) -> str:
        text = self.message
        if self.line is not None:
            text += f" at line {self.line}, column {self.column}"
        if self.detail:
            text += f": {self.detail}"
        return text


def _line_column(source: str, position: int) -> tuple[int, int]:
    # Computed from the offset ourselves rather than trusting Lark's token line/column, so
    # syntax and runtime errors (which only know an offset) use the same convention.
    position = max(0, min(position, len(source)))
    line = source.count("\n", 0, position) + 1
    column = position - (source.rfind("\n", 0, position) + 1) + 1
    return line, column


class _EvalFailure(Exception):
    """Raised inside evaluation; converted to ExpressionError where the source is known."""

    def __init__(self, message: str, position: int, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.detail = detail


# --------------------------------------------------------------------------- grammar

# Keywords are priority-2 regexps ending in \b: a plain string literal would lose to NAME
# (Lark tries longer-width regexps first), and \b keeps identifiers such as `Android`,
# `Order` or `jobs` from being split into a keyword and a tail. Punctuation is left
# anonymous so Lark filters it out of the tree; operators are named so their tokens (and
# positions, for runtime errors) survive.
_GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr
        | or_expr (OR | OR_SYM) and_expr                        -> or_op
?and_expr: not_expr
         | and_expr (AND | AND_SYM) not_expr                    -> and_op
?not_expr: comparison
         | (NOT | BANG) not_expr                                -> not_op
?comparison: concat
           | comparison (EQ | NE | LT | LE | GT | GE) concat     -> compare
?concat: additive
       | concat AMP additive                                    -> concat
?additive: term
         | additive (PLUS | MINUS) term                         -> arith
?term: unary
     | term (STAR | SLASH) unary                                -> arith
?unary: atom
      | MINUS unary                                             -> neg
?atom: NUMBER                                                   -> number
     | STRING                                                   -> string
     | TRUE                                                     -> true
     | FALSE                                                    -> false
     | (JOB | WORKER) "." label                                 -> label_ref
     | (NAME | AND | OR) "(" [arguments] ")"                    -> call
     | NAME                                                     -> bare_name
     | "(" or_expr ")"

label: NAME | QUOTED_IDENT
arguments: or_expr ("," or_expr)*

AND.2: /and\b/i
OR.2: /or\b/i
NOT.2: /not\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
JOB.2: /job\b/i
WORKER.2: /worker\b/i

AND_SYM: "&&"
OR_SYM: "||"
BANG: "!"
EQ: "="
NE: "<>"
LE: "<="
GE: ">="
LT: "<"
GT: ">"
AMP: "&"
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"

NUMBER: /(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?/
STRING: /"(?:[^"]|"")*"/
QUOTED_IDENT: /'(?:[^']|'')+'/
NAME: /[^\W\d]\w*/

%ignore /\s+/
"""

# Built once at import: grammar analysis is the expensive part of Lark, parsing is cheap.
_PARSER = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer="contextual",
    propagate_positions=True,
    maybe_placeholders=True,
)


# --------------------------------------------------------------------------- values

_Value = None | bool | int | float | str

_Impl = Callable[[list[_Value], int], _Value]

_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?")


def _kind(value: Any) -> str:
    # bool first: it is a subclass of int, and PowerFx keeps booleans and numbers apart.
    if value is None:
        return "blank"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def _describe(value: Any) -> str:
    kind = _kind(value)
    if kind == "blank":
        return "Blank"
    if kind == "boolean":
        return f"boolean {_to_text(value)}"
    if kind == "text":
        return f'text "{limits.truncate(value, limits.MAX_QUOTED_VALUE_LENGTH)}"'
    if kind == "number":
        return f"number {_to_text(value)}"
    return f"{kind} {value!r}"


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # PowerFx shows 2.0 as "2"; past 1e15 floats stop being exact integers, so keep repr.
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def _normalize_label(value: Any, where: str, position: int) -> _Value:
    if isinstance(value, str) and len(value) > limits.MAX_TEXT_VALUE_LENGTH:
        raise _EvalFailure("Text too long", position, f"{where} has {len(value)} characters")
    if value is None or isinstance(value, (bool, int, float, str)):
        return _checked_number(value, position) if isinstance(value, (int, float)) else value
    if isinstance(value, Decimal):
        # Labels that came through a DB numeric column; fold into the int/float model.
        return int(value) if value == value.to_integral_value() else float(value)
    raise _EvalFailure(
        "Unsupported label value", position, f"{where} is a {type(value).__name__}"
    )


def _truthy(value: Any, position: int) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        # "" counts as Blank (as IsBlank does); "true"/"false" text is what PowerFx coerces.
        if lowered in ("true", "false", ""):
            return lowered == "true"
    raise _EvalFailure("Type mismatch", position, f"expected a boolean, got {_describe(value)}")


def _checked_number(value: Any, position: int) -> Any:
    """`value`, unless it is a number beyond `limits.MAX_NUMBER_MAGNITUDE` (or not finite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > limits.MAX_NUMBER_MAGNITUDE:
        raise _EvalFailure("Numeric overflow", position, f"the result is beyond ±{limits.MAX_NUMBER_MAGNITUDE:g}")
    return value


def _to_number(value: Any, position: int, what: str) -> int | float:
    if value is None:
        return 0  # PowerFx: Blank is 0 in arithmetic.
    # bool is an int subclass, but PowerFx keeps booleans out of arithmetic.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise _EvalFailure(
        "Type mismatch", position, f"{what} needs a number, got {_describe(value)}"
    )


# --------------------------------------------------------------------------- AST


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def eval(self, ctx: "_Context") -> _Value:
        raise NotImplementedError


class _Context:
    """Labels of one evaluation, and how much text its `&` operators have built so far."""

    __slots__ = ("job", "worker", "text_built")

    def __init__(self, job: Mapping[str, Any], worker: Mapping[str, Any]) -> None:
        self.job = job
        self.worker = worker
        self.text_built = 0


class _Literal(_Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, value: _Value) -> None:
        super().__init__(pos)
        self.value = value

    def eval(self, ctx: _Context) -> _Value:
        return self.value


class _LabelRef(_Node):
    __slots__ = ("scope", "key")

    def __init__(self, pos: int, scope: str, key: str) -> None:
        super().__init__(pos)
        self.scope = scope
        self.key = key

    def eval(self, ctx: _Context) -> _Value:
        labels = ctx.job if self.scope == "job" else ctx.worker
        value = labels.get(self.key)
        return _normalize_label(value, f"{self.scope}.{self.key}", self.pos)


class _Not(_Node):
    __slots__ = ("operand",)

    def __init__(self, pos: int, operand: _Node) -> None:
        super().__init__(pos)
        self.operand = operand

    def eval(self, ctx: _Context) -> _Value:
        return not _truthy(self.operand.eval(ctx), self.operand.pos)


class _And(_Node):
    __slots__ = ("operands",)

    def __init__(self, pos: int, operands: Sequence[_Node]) -> None:
        super().__init__(pos)
        self.operands = tuple(operands)

    def eval(self, ctx: _Context) -> _Value:
        for operand in self.operands:
            if not _truthy(operand.eval(ctx), operand.pos):
                return False
        return True


class _Or(_And):
    __slots__ = ()

    def eval(self, ctx: _Context) -> _Value:
        for operand in self.operands:
            if _truthy(operand.eval(ctx), operand.pos):
                return True
        return False


_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(op: str, left: _Value, right: _Value) -> bool:
    left_kind, right_kind = _kind(left), _kind(right)
    if op in ("=", "<>"):
        # Same kind required: Python would say True == 1, PowerFx does not.
        equal = left_kind == right_kind and left == right
        return equal if op == "=" else not equal
    if left_kind != right_kind or left_kind not in ("number", "text"):
        return False
    return _ORDERING[op](left, right)


class _Binary(_Node):
    """An operator with two operands (`op` is its source spelling)."""

    __slots__ = ("op", "left", "right")

    def __init__(self, pos: int, op: str, left: _Node, right: _Node) -> None:
        super().__init__(pos)
        self.op = op
        self.left = left
        self.right = right


class _Compare(_Binary):
    __slots__ = ()

    def eval(self, ctx: _Context) -> _Value:
        return _compare(self.op, self.left.eval(ctx), self.right.eval(ctx))


class _Concat(_Node):
    __slots__ = ("left", "right")

    def __init__(self, pos: int, left: _Node, right: _Node) -> None:
        super().__init__(pos)
        self.left = left
        self.right = right

    def eval(self, ctx: _Context) -> _Value:
        left, right = _to_text(self.left.eval(ctx)), _to_text(self.right.eval(ctx))
        size = len(left) + len(right)
        ctx.text_built += size
        # Checked before joining, so a runaway concatenation never allocates the result.
        if size > limits.MAX_TEXT_VALUE_LENGTH:
            raise _EvalFailure(
                "Text too long", self.pos, f"'&' would build {size} characters (at most {limits.MAX_TEXT_VALUE_LENGTH})"
            )
        if ctx.text_built > limits.MAX_TEXT_BUILT_PER_EVALUATION:
            raise _EvalFailure(
                "Text too long", self.pos,
                f"the expression builds more than {limits.MAX_TEXT_BUILT_PER_EVALUATION} characters of text",
            )
        return left + right


def _arith(op: str, a: int | float, b: int | float, position: int) -> int | float:
    try:
        if op == "+":
            return _checked_number(a + b, position)
        if op == "-":
            return _checked_number(a - b, position)
        if op == "*":
            return _checked_number(a * b, position)
        if b == 0:
            raise _EvalFailure("Division by zero", position)
        if isinstance(a, int) and isinstance(b, int) and a % b == 0:
            # Exact integer quotient stays an int (6 / 3 -> 2), matching the int/float rule.
            return a // b
        return _checked_number(a / b, position)
    except OverflowError as exc:
        raise _EvalFailure("Numeric overflow", position, str(exc)) from None


class _Arith(_Binary):
    __slots__ = ()

    def eval(self, ctx: _Context) -> _Value:
        what = f"'{self.op}'"
        a = _to_number(self.left.eval(ctx), self.pos, what)
        b = _to_number(self.right.eval(ctx), self.pos, what)
        return _arith(self.op, a, b, self.pos)


class _Neg(_Node):
    __slots__ = ("operand",)

    def __init__(self, pos: int, operand: _Node) -> None:
        super().__init__(pos)
        self.operand = operand

    def eval(self, ctx: _Context) -> _Value:
        return -_to_number(self.operand.eval(ctx), self.pos, "unary '-'")


class _If(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int, args: Sequence[_Node]) -> None:
        super().__init__(pos)
        self.args = tuple(args)

    def eval(self, ctx: _Context) -> _Value:
        args = self.args
        # Only the chosen branch is evaluated, so a guarded division by zero is fine.
        for i in range(0, len(args) - 1, 2):
            if _truthy(args[i].eval(ctx), args[i].pos):
                return args[i + 1].eval(ctx)
        if len(args) % 2:
            return args[-1].eval(ctx)
        return None


class _Call(_Node):
    __slots__ = ("name", "impl", "args")

    def __init__(self, pos: int, name: str, impl: _Impl, args: Sequence[_Node]) -> None:
        super().__init__(pos)
        self.name = name
        self.impl = impl
        self.args = tuple(args)

    def eval(self, ctx: _Context) -> _Value:
        return self.impl([arg.eval(ctx) for arg in self.args], self.pos)


# --------------------------------------------------------------------------- functions


def _fn_isblank(args: list[_Value], pos: int) -> _Value:
    # PowerFx's IsBlank is also true for empty text.
    return args[0] is None or args[0] == ""


def _fn_blank(args: list[_Value], pos: int) -> _Value:
    return None


def _fn_abs(args: list[_Value], pos: int) -> _Value:
    return abs(_to_number(args[0], pos, "Abs"))


def _min_max(name: str, pick: Callable[..., Any]) -> _Impl:
    def impl(args: list[_Value], pos: int) -> _Value:
        # Blank arguments are skipped (PowerFx aggregate behaviour); all-Blank gives Blank.
        numbers = [_to_number(a, pos, name) for a in args if a is not None]
        return pick(numbers) if numbers else None

    return impl


def _fn_text(args: list[_Value], pos: int) -> _Value:
    return _to_text(args[0])


def _fn_value(args: list[_Value], pos: int) -> _Value:
    value = args[0]
    if isinstance(value, bool):
        return 1 if value else 0
    if not isinstance(value, str):
        return value  # Blank or already a number
    text = value.strip()
    if text == "":
        return None
    # A strict pattern rather than float(): Python would also accept "nan", "inf", "1_000".
    if len(text) > limits.MAX_NUMBER_LITERAL_LENGTH or not _NUMBER_TEXT.fullmatch(text):
        raise _EvalFailure("Invalid number", pos, f"Value cannot convert {_describe(value)}")
    if re.fullmatch(r"[+-]?\d+", text):
        return _checked_number(int(text), pos)
    return _checked_number(float(text), pos)


# name -> (canonical spelling, min args, max args or None, implementation). If/And/Or have
# no implementation because they are built as lazy nodes for short-circuiting. `Not(x)` is
# absent on purpose: `Not` always lexes as the prefix keyword, and `Not (x)` means the same.
_FUNCTIONS: dict[str, tuple[str, int, int | None, _Impl | None]] = {
    "if": ("If", 2, None, None),
    "and": ("And", 1, None, None),
    "or": ("Or", 1, None, None),
    "isblank": ("IsBlank", 1, 1, _fn_isblank),
    "blank": ("Blank", 0, 0, _fn_blank),
    "abs": ("Abs", 1, 1, _fn_abs),
    "min": ("Min", 1, None, _min_max("Min", min)),
    "max": ("Max", 1, None, _min_max("Max", max)),
    "text": ("Text", 1, 1, _fn_text),
    "value": ("Value", 1, 1, _fn_value),
}


# --------------------------------------------------------------------------- tree -> AST


class _CompileFailure(Exception):
    def __init__(self, message: str, position: int, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.detail = detail


def _at(token: Token) -> int:
    # Tokens from the LALR lexer always carry a position; the fallback only satisfies typing.
    return token.start_pos if token.start_pos is not None else 0


def _unquote(text: str, quote: str) -> str:
    return text[1:-1].replace(quote * 2, quote)


@v_args(meta=True)
class _Builder(Transformer[Token, _Node]):
    """Turns the Lark parse tree into evaluable nodes, checking function names and arity."""

    def number(self, meta: Any, children: list[Token]) -> _Node:
        (token,) = children
        text = str(token)
        if len(text) > limits.MAX_NUMBER_LITERAL_LENGTH:
            # int() refuses more than 4,300 digits anyway (with a ValueError of its own).
            raise _CompileFailure(
                "Number too long", _at(token), f"{len(text)} characters; at most {limits.MAX_NUMBER_LITERAL_LENGTH}"
            )
        value: int | float = int(text) if re.fullmatch(r"\d+", text) else float(text)
        if not math.isfinite(value) or abs(value) > limits.MAX_NUMBER_MAGNITUDE:
            raise _CompileFailure("Number out of range", _at(token), f"at most {limits.MAX_NUMBER_MAGNITUDE:g}")
        return _Literal(_at(token), value)

    def string(self, meta: Any, children: list[Token]) -> _Node:
        (token,) = children
        return _Literal(_at(token), _unquote(str(token), '"'))

    def true(self, meta: Any, children: list[Token]) -> _Node:
        return _Literal(_at(children[0]), True)

    def false(self, meta: Any, children: list[Token]) -> _Node:
        return _Literal(_at(children[0]), False)

    def label(self, meta: Any, children: list[Token]) -> str:
        (token,) = children
        if token.type == "QUOTED_IDENT":
            return _unquote(str(token), "'")
        return str(token)

    def label_ref(self, meta: Any, children: list[Any]) -> _Node:
        scope_token, key = children
        return _LabelRef(_at(scope_token), str(scope_token).lower(), key)

    def bare_name(self, meta: Any, children: list[Token]) -> _Node:
        (token,) = children
        raise _CompileFailure(
            f"Unknown name '{token}'",
            _at(token),
            f"refer to labels as job.{token} or worker.{token}",
        )

    def arguments(self, meta: Any, children: list[_Node]) -> list[_Node]:
        return list(children)

    def call(self, meta: Any, children: list[Any]) -> _Node:
        name_token, args = children
        args = args or []
        pos = _at(name_token)
        entry = _FUNCTIONS.get(str(name_token).lower())
        if entry is None:
            raise _CompileFailure(f"Unknown function '{name_token}'", pos)
        canonical, least, most, impl = entry
        if len(args) < least or (most is not None and len(args) > most):
            if most is None:
                expected = f"at least {least}"
            elif least == most:
                expected = str(least)
            else:
                expected = f"{least} to {most}"
            plural = "" if expected.split()[-1] == "1" else "s"
            raise _CompileFailure(
                "Wrong number of arguments",
                pos,
                f"{canonical} takes {expected} argument{plural}, got {len(args)}",
            )
        if canonical == "If":
            return _If(pos, args)
        if canonical == "And":
            return _And(pos, args)
        if canonical == "Or":
            return _Or(pos, args)
        assert impl is not None
        return _Call(pos, canonical, impl, args)

    def or_op(self, meta: Any, children: list[Any]) -> _Node:
        left, _op, right = children
        return _Or(left.pos, (left, right))

    def and_op(self, meta: Any, children: list[Any]) -> _Node:
        left, _op, right = children
        return _And(left.pos, (left, right))

    def not_op(self, meta: Any, children: list[Any]) -> _Node:
        op, operand = children
        return _Not(_at(op), operand)

    def compare(self, meta: Any, children: list[Any]) -> _Node:
        left, op, right = children
        return _Compare(_at(op), str(op), left, right)

    def concat(self, meta: Any, children: list[Any]) -> _Node:
        left, op, right = children
        return _Concat(_at(op), left, right)

    def arith(self, meta: Any, children: list[Any]) -> _Node:
        # The node sits at its operator, so "Division by zero" points at the `/`.
        left, op, right = children
        return _Arith(_at(op), str(op), left, right)

    def neg(self, meta: Any, children: list[Any]) -> _Node:
        op, operand = children
        return _Neg(_at(op), operand)


_BUILDER = _Builder()


# --------------------------------------------------------------------------- syntax errors

_OPERATOR_TERMINALS = frozenset(
    {"AND", "AND_SYM", "OR", "OR_SYM", "EQ", "NE", "LT", "LE", "GT", "GE",
     "AMP", "PLUS", "MINUS", "STAR", "SLASH"}
)
_VALUE_TERMINALS = frozenset({"NUMBER", "STRING", "TRUE", "FALSE", "JOB", "WORKER", "NAME"})
_PUNCTUATION = {"LPAR": "'('", "RPAR": "')'", "COMMA": "','", "DOT": "'.'"}


def _describe_expected(names: set[str]) -> str:
    # Lark lists every acceptable terminal; collapse them into what a user would look for.
    parts: list[str] = []
    if "QUOTED_IDENT" in names:
        parts.append("a label name")
    elif names & _VALUE_TERMINALS:
        parts.append("a value")
    for name, text in _PUNCTUATION.items():
        if name in names and not (name == "LPAR" and "a value" in parts):
            parts.append(text)
    if names & _OPERATOR_TERMINALS and "a value" not in parts:
        parts.append("an operator")
    if "$END" in names:
        parts.append("end of expression")
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _syntax_error(source: str, exc: UnexpectedInput) -> ExpressionError:
    position: int | None
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            # Lark borrows the last token's position for $END; the end of input is clearer.
            position = len(source)
            found = "end of expression"
        else:
            position = token.start_pos if token.start_pos is not None else len(source)
            found = f"'{token}'"
        expected = _describe_expected(set(exc.accepts or exc.expected))
        detail = f"unexpected {found}" + (f"; expected {expected}" if expected else "")
        return ExpressionError("Syntax error", position=position, source=source, detail=detail)
    if isinstance(exc, UnexpectedCharacters):
        position = exc.pos_in_stream if exc.pos_in_stream is not None else 0
        char = source[position] if position < len(source) else ""
        if char == '"':
            detail = "unterminated string (close it with \")"
        elif char == "'":
            detail = "unterminated quoted label name (close it with ')"
        else:
            detail = f"unexpected character {char!r}"
        return ExpressionError("Syntax error", position=position, source=source, detail=detail)
    position = getattr(exc, "pos_in_stream", None)
    return ExpressionError("Syntax error", position=position, source=source, detail=str(exc))


# --------------------------------------------------------------------------- public API


class CompiledExpression:
    """A parsed expression; immutable and safe to share between threads and evaluations."""

    __slots__ = ("source", "_root")

    def __init__(self, source: str, root: _Node) -> None:
        self.source = source
        self._root = root

    def evaluate(
        self,
        *,
        job: Mapping[str, Any] | None = None,
        worker: Mapping[str, Any] | None = None,
    ) -> Any:
        """Evaluate against job and worker labels; returns None, bool, int, float or str."""
        ctx = _Context(job if job is not None else {}, worker if worker is not None else {})
        try:
            return self._root.eval(ctx)
        except _EvalFailure as exc:
            raise ExpressionError(
                exc.message, position=exc.position, source=self.source, detail=exc.detail
            ) from None
        except RecursionError:
            raise ExpressionError("Expression is nested too deeply") from None

    def __repr__(self) -> str:
        return f"CompiledExpression({self.source!r})"


def compile_expression(source: str) -> CompiledExpression:
    """Parse ``source`` once (cached by text).

    Raises :class:`ExpressionError` with a position for syntax errors, unknown functions
    and names, and wrong argument counts.
    """
    if not isinstance(source, str):
        raise ExpressionError(f"Expression must be a string, not {type(source).__name__}")
    if len(source) > limits.MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            "Expression too long", detail=f"{len(source)} characters; at most {limits.MAX_EXPRESSION_LENGTH}"
        )
    return _compile_cached(source)


@functools.lru_cache(maxsize=1024)
def _compile_cached(source: str) -> CompiledExpression:
    # Rules are re-evaluated for every job/worker match, so parsing once per distinct text
    # matters; failures raise and are therefore not cached, which is fine (they are rare).
    try:
        tree = _PARSER.parse(source)
    except UnexpectedInput as exc:
        raise _syntax_error(source, exc) from None
    except RecursionError:
        raise ExpressionError("Expression is nested too deeply") from None
    nodes = sum(1 for _ in tree.iter_subtrees())
    if nodes > limits.MAX_EXPRESSION_NODES:
        raise ExpressionError(
            "Expression too large", detail=f"{nodes} operations; at most {limits.MAX_EXPRESSION_NODES}"
        )
    try:
        root = _BUILDER.transform(tree)
    except VisitError as exc:
        inner = exc.orig_exc
        if isinstance(inner, _CompileFailure):
            raise ExpressionError(
                inner.message, position=inner.position, source=source, detail=inner.detail
            ) from None
        if isinstance(inner, RecursionError):
            raise ExpressionError("Expression is nested too deeply") from None
        raise
    except RecursionError:
        raise ExpressionError("Expression is nested too deeply") from None
    return CompiledExpression(source, root)
