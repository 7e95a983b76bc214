"""A SOQL subset: parse and evaluate over a pyarrow table.

``SELECT f1, f2 | COUNT() FROM Object [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
[LIMIT n] [OFFSET n]`` where ``cond`` combines ``field op literal`` (``= != <> < <= > >=``),
``field [NOT] IN (lit, ...)`` and ``field LIKE 'pat%'`` with AND / OR / NOT and parentheses.
Literals: 'quoted strings', numbers, true/false, null, datetimes (2025-01-01T00:00:00Z,
+0000, +00:00, optional fraction) and dates (2025-01-01). As in Salesforce, a datetime field
needs a datetime literal and a date field a date literal.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

UTC = dt.timezone.utc


class SOQLError(Exception):
    def __init__(self, message: str, code: str = "MALFORMED_QUERY"):
        super().__init__(message)
        self.code = code


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})(?![\dT])
    | (?P<number>[+-]?\d+(?:\.\d+)?)(?![\w.])
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<op><>|!=|<=|>=|=|<|>)
    | (?P<punct>[(),])
    | (?P<name>[A-Za-z_][A-Za-z0-9_.]*(?::\d+)?)
    )""",
    re.VERBOSE,
)
KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST",
            "LIMIT", "OFFSET", "IN", "LIKE", "TRUE", "FALSE", "NULL", "COUNT"}


@dataclass
class Tok:
    kind: str
    text: str
    pos: int

    @property
    def kw(self) -> str | None:
        return self.text.upper() if self.kind == "name" and self.text.upper() in KEYWORDS else None


def tokenize(q: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    q = q.rstrip()
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m or m.end() == pos:
            raise SOQLError(f"unexpected token at position {pos}: {q[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append(Tok(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


# --- AST --------------------------------------------------------------------------------------
@dataclass
class Lit:
    kind: str  # string | number | bool | null | datetime | date
    value: Any


@dataclass
class Cond:
    field: str
    op: str
    value: Lit | list[Lit]
    negate: bool = False


@dataclass
class BoolOp:
    op: str  # AND | OR | NOT
    args: list[Any]


@dataclass
class Query:
    fields: list[str] | None  # None = COUNT()
    obj: str
    where: Any = None
    order: list[tuple[str, bool, bool | None]] = field(default_factory=list)  # (field, desc, nulls_last)
    limit: int | None = None
    offset: int = 0


class _Parser:
    def __init__(self, q: str):
        self.q = q
        self.toks = tokenize(q)
        self.i = 0

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> Tok:
        t = self.peek()
        if t is None:
            raise SOQLError("unexpected end of query")
        self.i += 1
        return t

    def expect_kw(self, kw: str) -> None:
        t = self.next()
        if t.kw != kw:
            raise SOQLError(f"unexpected token: '{t.text}' (expecting {kw})")

    def accept_kw(self, kw: str) -> bool:
        t = self.peek()
        if t is not None and t.kw == kw:
            self.i += 1
            return True
        return False

    def accept_punct(self, p: str) -> bool:
        t = self.peek()
        if t is not None and t.kind == "punct" and t.text == p:
            self.i += 1
            return True
        return False

    def name(self) -> str:
        t = self.next()
        if t.kind != "name" or t.kw in ("FROM", "WHERE", "ORDER", "LIMIT", "SELECT", "AND", "OR"):
            raise SOQLError(f"unexpected token: '{t.text}'")
        return t.text

    def parse(self) -> Query:
        self.expect_kw("SELECT")
        fields: list[str] | None = []
        t = self.peek()
        if t is not None and t.kw == "COUNT" and self.toks[self.i + 1 : self.i + 2] and self.toks[self.i + 1].text == "(":
            self.i += 1
            if not self.accept_punct("(") or not self.accept_punct(")"):
                raise SOQLError("only COUNT() is supported")
            fields = None
        else:
            while True:
                fields.append(self.name())
                if not self.accept_punct(","):
                    break
        self.expect_kw("FROM")
        q = Query(fields, self.name())
        if self.accept_kw("WHERE"):
            q.where = self.expr()
        if self.accept_kw("ORDER"):
            self.expect_kw("BY")
            while True:
                f = self.name()
                desc = False
                if self.accept_kw("DESC"):
                    desc = True
                else:
                    self.accept_kw("ASC")
                nulls_last = None
                if self.accept_kw("NULLS"):
                    if self.accept_kw("LAST"):
                        nulls_last = True
                    else:
                        self.expect_kw("FIRST")
                        nulls_last = False
                q.order.append((f, desc, nulls_last))
                if not self.accept_punct(","):
                    break
        if self.accept_kw("LIMIT"):
            q.limit = self.int_lit("LIMIT")
        if self.accept_kw("OFFSET"):
            q.offset = self.int_lit("OFFSET")
        t = self.peek()
        if t is not None:
            raise SOQLError(f"unexpected token: '{t.text}'")
        return q

    def int_lit(self, what: str) -> int:
        t = self.next()
        if t.kind != "number" or not t.text.isdigit():
            raise SOQLError(f"{what} must be a non-negative integer, not '{t.text}'")
        return int(t.text)

    # expr := term (OR term)* ; term := factor (AND factor)* ; factor := NOT factor | ( expr ) | cond
    def expr(self) -> Any:
        args = [self.term()]
        while self.accept_kw("OR"):
            args.append(self.term())
        return args[0] if len(args) == 1 else BoolOp("OR", args)

    def term(self) -> Any:
        args = [self.factor()]
        while self.accept_kw("AND"):
            args.append(self.factor())
        return args[0] if len(args) == 1 else BoolOp("AND", args)

    def factor(self) -> Any:
        if self.accept_kw("NOT"):
            return BoolOp("NOT", [self.factor()])
        if self.accept_punct("("):
            e = self.expr()
            if not self.accept_punct(")"):
                raise SOQLError("missing closing parenthesis")
            return e
        f = self.name()
        t = self.next()
        if t.kind == "op":
            return Cond(f, "!=" if t.text == "<>" else t.text, self.literal())
        negate = False
        if t.kw == "NOT":
            negate = True
            t = self.next()
        if t.kw == "IN":
            if not self.accept_punct("("):
                raise SOQLError("expected ( after IN")
            vals = [self.literal()]
            while self.accept_punct(","):
                vals.append(self.literal())
            if not self.accept_punct(")"):
                raise SOQLError("expected ) after IN list")
            return Cond(f, "IN", vals, negate)
        if t.kw == "LIKE" and not negate:
            lit = self.literal()
            if lit.kind != "string":
                raise SOQLError("LIKE needs a quoted string")
            return Cond(f, "LIKE", lit)
        raise SOQLError(f"unexpected token: '{t.text}' (expecting an operator)")

    def literal(self) -> Lit:
        t = self.next()
        if t.kind == "string":
            s = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), t.text[1:-1])
            return Lit("string", s)
        if t.kind == "number":
            return Lit("number", float(t.text) if "." in t.text else int(t.text))
        if t.kind == "datetime":
            s = t.text.replace("Z", "+00:00")
            if re.search(r"[+-]\d{4}$", s):
                s = s[:-2] + ":" + s[-2:]
            return Lit("datetime", dt.datetime.fromisoformat(s).astimezone(UTC))
        if t.kind == "date":
            return Lit("date", dt.date.fromisoformat(t.text))
        if t.kw in ("TRUE", "FALSE"):
            return Lit("bool", t.kw == "TRUE")
        if t.kw == "NULL":
            return Lit("null", None)
        if t.kind == "name" and (t.text.upper() in ("TODAY", "YESTERDAY") or ":" in t.text or t.text.upper().startswith(("LAST_", "NEXT_", "THIS_"))):
            raise SOQLError(f"date literal {t.text} is not supported by the sandbox; use an explicit datetime")
        raise SOQLError(f"unexpected token: '{t.text}' (expecting a literal)")


def parse(q: str) -> Query:
    if not q or not q.strip():
        raise SOQLError("empty query")
    return _Parser(q).parse()


# --- evaluation -------------------------------------------------------------------------------
def _sf_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "datetime"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    return "string"


def _scalar(lit: Lit, col_name: str, t: pa.DataType) -> pa.Scalar:
    kind = _sf_type(t)
    ok = {"datetime": ("datetime",), "date": ("date",), "boolean": ("bool",), "number": ("number",),
          "string": ("string",)}[kind]
    if lit.kind not in ok:
        article = {"datetime": "dateTime", "date": "date", "boolean": "boolean", "number": "number",
                   "string": "string"}[kind]
        quote = " and should not be enclosed in quotes" if kind != "string" and lit.kind == "string" else ""
        raise SOQLError(f"value of filter criterion for field '{col_name}' must be of type {article}{quote}",
                        "INVALID_FIELD")
    if kind == "number":
        return pa.scalar(lit.value).cast(pa.float64()) if isinstance(lit.value, float) else pa.scalar(lit.value).cast(t)
    return pa.scalar(lit.value, t)


def _mask(e: Any, table: pa.Table, resolve: Any) -> pa.Array:
    n = table.num_rows
    if isinstance(e, BoolOp):
        if e.op == "NOT":
            return pc.invert(_mask(e.args[0], table, resolve))
        masks = [_mask(a, table, resolve) for a in e.args]
        out = masks[0]
        for m in masks[1:]:
            out = pc.and_(out, m) if e.op == "AND" else pc.or_(out, m)
        return out
    assert isinstance(e, Cond)
    name = resolve(e.field)
    col = table.column(name)
    t = col.type
    if e.op == "IN":
        vals = [v for v in e.value if v.kind != "null"]  # type: ignore[union-attr]
        has_null = len(vals) != len(e.value)  # type: ignore[arg-type]
        scalars = [_scalar(v, name, t) for v in vals]
        m = pc.is_in(col, value_set=pa.array([s.as_py() for s in scalars], type=t)) if scalars else \
            pa.array([False] * n)
        m = pc.fill_null(m, False)
        if has_null:
            m = pc.or_(m, pc.is_null(col))
        return pc.invert(m) if e.negate else m
    lit = e.value
    assert isinstance(lit, Lit)
    if lit.kind == "null":
        if e.op == "=":
            return pc.is_null(col)
        if e.op == "!=":
            return pc.is_valid(col)
        raise SOQLError(f"null can only be compared with = or != (field '{name}')")
    if e.op == "LIKE":
        if _sf_type(t) != "string":
            raise SOQLError(f"invalid operator on field '{name}': LIKE needs a text field", "INVALID_FIELD")
        pat = lit.value
        return pc.fill_null(pc.match_like(col, pat, ignore_case=True), False)
    s = _scalar(lit, name, t)
    if _sf_type(t) == "string" and e.op in ("=", "!="):
        # SOQL string comparison is case-insensitive
        lhs, rhs = pc.utf8_lower(col), pa.scalar(str(s.as_py()).lower())
    else:
        lhs, rhs = col, s
    fn = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal, ">": pc.greater,
          ">=": pc.greater_equal}[e.op]
    m = fn(lhs, rhs)
    # SOQL has no three-valued logic: `x != 'a'` keeps rows where x is null
    return pc.fill_null(m, e.op == "!=")


def evaluate(q: Query, table: pa.Table, resolve: Any) -> pa.Array:
    """Row indices of ``table`` matching the query, in result order (before LIMIT/OFFSET)."""
    if q.where is not None:
        m = _mask(q.where, table, resolve)
        idx = pc.indices_nonzero(m)
    else:
        idx = pa.array(range(table.num_rows), pa.uint64())
    if q.order:
        sub = table.take(idx)
        # SOQL default: ASC -> NULLS FIRST, DESC -> NULLS LAST
        keys = [(resolve(f), "descending" if desc else "ascending",
                 "at_end" if (nl if nl is not None else desc) else "at_start") for f, desc, nl in q.order]
        order = pc.sort_indices(sub, sort_keys=keys)
        idx = idx.take(order)
    return idx
