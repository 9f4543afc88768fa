"""The einstein_v2 expression language of the Elk artifact's graphs: a tokenizer and a recursive-descent
parser to :class:`Expression` (what each input is indexed by, the output axes, reductions, ``where``
lengths). The grammar it accepts is listed in :mod:`elk.graphs.artifact`, step 1."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

#: the reduction operators of an assignment (sum, max, min)
REDUCTIONS = ("+=!", ">=!", "<=!")


class ExprError(ValueError):
    """An expression the parser or the einsum mapping cannot handle (wrapped with the node's id)."""


_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)"
                    r"|(?P<str>`[^`]*`)|(?P<op>\+=!|>=!|<=!|>=|<=|==|!=|[-+*/%<>=()\[\],.;]))")
_COMPARE = ("<", ">", "<=", ">=", "==", "!=")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            rest = text[pos:].strip()
            if rest:
                raise ExprError(f"unexpected text {rest[:16]!r}")
            break
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    tokens.append(("end", ""))
    return tokens


class _Parser:
    """Recursive descent over the tokens; nodes are tuples tagged by their first item.

    ``('num', v)``, ``('idx', name)``, ``('acc', tensor, [index exprs])``, ``('bin', op, l, r)``,
    ``('neg', e)``, ``('cmp', op, l, r)``, ``('call', method, base, [args])``, ``('fn', name, [args])``,
    ``('list', [items])``, ``('str', s)``, ``('gather', table, ids)``.
    """

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def _next(self) -> tuple[str, str]:
        token = self.tokens[self.i]
        if token[0] != "end":
            self.i += 1
        return token

    def _accept(self, value: str) -> bool:
        kind, text = self.tokens[self.i]
        if kind in ("op", "name") and text == value:
            self.i += 1
            return True
        return False

    def _expect(self, value: str) -> None:
        if not self._accept(value):
            raise ExprError(f"expected {value!r} but found {self._peek()[1] or 'the end'!r}")

    def statement(self) -> tuple[str, list, str, tuple, list[tuple[str, int]]]:
        kind, name = self._next()
        if kind != "name" or not re.fullmatch(r"output\d+", name):
            raise ExprError("an expression must start with output0[...]")
        self._expect("[")
        out = self._items("]")
        kind, assign = self._next()
        if assign not in ("=", *REDUCTIONS):
            raise ExprError(f"expected '=', '+=!' or '>=!' after the output, found {assign!r}")
        value = self._arith()
        if self._accept("g"):
            value = ("gather", value, self._arith())
        where: list[tuple[str, int]] = []
        if self._accept("where"):
            while True:
                kind, index = self._next()
                if kind != "name":
                    raise ExprError(f"expected an index name after 'where', found {index!r}")
                self._expect("in")
                kind, number = self._next()
                if kind != "num" or not number.isdigit():
                    raise ExprError(f"expected a length after '{index} in', found {number!r}")
                where.append((index, int(number)))
                if not self._accept(","):
                    break
        self._accept(";")
        if self._peek()[0] != "end":
            raise ExprError(f"unexpected {self._peek()[1]!r} after the expression")
        return name, out, assign, value, where

    def _items(self, close: str) -> list:
        items: list = []
        if self._accept(close):
            return items
        while True:
            items.append(self._cond())
            if self._accept(close):
                return items
            self._expect(",")

    def _cond(self) -> tuple:
        left = self._arith()
        kind, text = self._peek()
        if kind == "op" and text in _COMPARE:
            self._next()
            return ("cmp", text, left, self._arith())
        return left

    def _arith(self) -> tuple:
        left = self._term()
        while self._peek() in (("op", "+"), ("op", "-")):
            op = self._next()[1]
            left = ("bin", op, left, self._term())
        return left

    def _term(self) -> tuple:
        left = self._unary()
        while self._peek() in (("op", "*"), ("op", "/"), ("op", "%")):
            op = self._next()[1]
            left = ("bin", op, left, self._unary())
        return left

    def _unary(self) -> tuple:
        if self._accept("-"):
            return ("neg", self._unary())
        node = self._primary()
        while self._accept("."):
            kind, method = self._next()
            if kind != "name":
                raise ExprError(f"expected a method name after '.', found {method!r}")
            self._expect("(")
            node = ("call", method, node, self._items(")"))
        return node

    def _primary(self) -> tuple:
        kind, text = self._next()
        if kind == "num":
            number: float = float(text)
            return ("num", int(number) if number.is_integer() and re.fullmatch(r"\d+", text) else number)
        if kind == "str":
            return ("str", text[1:-1])
        if kind == "name":
            if self._accept("["):
                return ("acc", text, self._items("]"))
            if self._accept("("):
                return ("fn", text, self._items(")"))
            return ("idx", text)
        if text == "(":
            inner = self._cond()
            self._expect(")")
            return inner
        if text == "[":
            return ("list", self._items("]"))
        raise ExprError(f"unexpected {text or 'end of expression'!r}")


@dataclass(frozen=True)
class AxisRef:
    """One axis of a tensor reference: the index names it uses and, when affine, its form."""

    names: tuple[str, ...]
    coeffs: tuple[tuple[str, int], ...] | None  # None: not affine (division, modulo)
    const: int = 0

    @property
    def bare(self) -> str | None:
        """The index name when the axis is exactly one index (``N2``)."""
        if self.coeffs is not None and len(self.coeffs) == 1 and self.coeffs[0][1] == 1 and self.const == 0:
            return self.coeffs[0][0]
        return None

    @property
    def constant(self) -> bool:
        """Whether the index is a constant (no named index in it)."""
        return self.coeffs == ()


@dataclass(frozen=True)
class Access:
    """A data reference ``inputK[axes]`` inside an expression."""

    slot: int
    axes: tuple[AxisRef, ...]


@dataclass(frozen=True)
class Expression:
    """The parts of an einstein_v2 statement elk needs."""

    text: str
    output: tuple[str, ...]
    assign: str  # '=', '+=!' (sum), '>=!' (max), '<=!' (min)
    accesses: tuple[Access, ...]  # every data reference, in order of appearance
    where: tuple[tuple[str, int], ...]
    calls: frozenset[str]
    form: str  # 'product' (a * b), 'gather' (a g b) or 'expr'

    @property
    def slots(self) -> dict[int, Access]:
        """The first access of each input slot, in slot order."""
        seen: dict[int, Access] = {}
        for a in self.accesses:
            seen.setdefault(a.slot, a)
        return dict(sorted(seen.items()))


def _affine(node: tuple) -> tuple[dict[str, int], int] | None:
    tag = node[0]
    if tag == "num":
        return ({}, node[1]) if isinstance(node[1], int) else None
    if tag == "idx":
        return ({node[1]: 1}, 0)
    if tag == "neg":
        inner = _affine(node[1])
        return None if inner is None else ({k: -v for k, v in inner[0].items()}, -inner[1])
    if tag == "bin":
        a, b = _affine(node[2]), _affine(node[3])
        if a is None or b is None:
            return None
        op = node[1]
        if op in ("+", "-"):
            sign = 1 if op == "+" else -1
            coeffs = dict(a[0])
            for k, v in b[0].items():
                coeffs[k] = coeffs.get(k, 0) + sign * v
            return ({k: v for k, v in coeffs.items() if v}, a[1] + sign * b[1])
        if op == "*":
            if not a[0]:
                return ({k: v * a[1] for k, v in b[0].items() if v * a[1]}, b[1] * a[1])
            if not b[0]:
                return ({k: v * b[1] for k, v in a[0].items() if v * b[1]}, a[1] * b[1])
    return None


def _names(node: tuple, out: list[str]) -> None:
    tag = node[0]
    if tag == "idx":
        if node[1] not in out:
            out.append(node[1])
    elif tag in ("bin", "cmp"):
        _names(node[2], out)
        _names(node[3], out)
    elif tag == "neg":
        _names(node[1], out)
    elif tag == "num":
        pass
    else:
        raise ExprError("an index expression may hold only index names, integers and + - * / %")


def _axis(node: tuple) -> AxisRef:
    names: list[str] = []
    _names(node, names)
    form = _affine(node)
    if form is None:
        return AxisRef(tuple(names), None)
    return AxisRef(tuple(names), tuple(sorted(form[0].items(), key=lambda kv: names.index(kv[0]))), form[1])


def _collect(node: tuple, accesses: list[Access], calls: set[str]) -> None:
    tag = node[0]
    if tag == "acc":
        m = re.fullmatch(r"input(\d+)", node[1])
        if m is None:
            raise ExprError(f"unknown tensor {node[1]!r} (inputs are input0, input1, ...)")
        accesses.append(Access(int(m.group(1)), tuple(_axis(e) for e in node[2])))
    elif tag == "call":
        method, base, args = node[1], node[2], node[3]
        if method == "dtype":
            return  # x.dtype() names a type, it reads no data
        if method == "call" and args and args[0][0] == "str":
            calls.add(args[0][1])
            args = args[1:]
        _collect(base, accesses, calls)
        for arg in args:
            _collect(arg, accesses, calls)
    elif tag in ("bin", "cmp"):
        _collect(node[2], accesses, calls)
        _collect(node[3], accesses, calls)
    elif tag == "neg":
        _collect(node[1], accesses, calls)
    elif tag in ("fn", "list"):
        for arg in node[-1]:
            _collect(arg, accesses, calls)
    elif tag == "gather":
        _collect(node[1], accesses, calls)
        _collect(node[2], accesses, calls)


def _unwrap(node: tuple) -> tuple:
    """``x.when(cond, pad)`` -> ``x`` (padding of a convolution or pooling input)."""
    while node[0] == "call" and node[1] == "when":
        node = node[2]
    return node


@lru_cache(maxsize=4096)
def parse_expression(text: str) -> Expression:
    """Parse one einstein_v2 statement, e.g. ``output0[N0, N1] +=! input0[N0, N1, R2];``.

    Raises ``ValueError`` (an ``ExprError``) with the reason when the text is not one.
    """
    _, out, assign, value, where = _Parser(text).statement()
    output = []
    for e in out:
        if e[0] != "idx":
            raise ExprError("every output axis must be an index name")
        if e[1] in output:
            raise ExprError(f"output index {e[1]} appears twice")
        output.append(e[1])
    accesses: list[Access] = []
    calls: set[str] = set()
    _collect(value, accesses, calls)
    if value[0] == "gather":
        form = "gather"
    elif value[0] == "bin" and value[1] == "*" and _unwrap(value[2])[0] == "acc" and _unwrap(value[3])[0] == "acc":
        form = "product"
    else:
        form = "expr"
    return Expression(text, tuple(output), assign, tuple(accesses), tuple(where), frozenset(calls), form)


