"""A small ES|QL engine for testing Sluice's detection rules without Elasticsearch.

Queries are parsed by the parser generated from Elasticsearch's own ANTLR grammar (PyPI
`esql-parser`, the grammar of Elasticsearch 9.1.3); `parse` turns its parse tree into a small AST
and fails on any syntax error. `run` evaluates that AST over JSON documents with ES|QL's
semantics for the subset the rules use:

- commands: FROM (index patterns, METADATA), WHERE, EVAL, STATS ... BY, MV_EXPAND, KEEP, SORT,
  LIMIT (and the implicit LIMIT 1000);
- expressions: AND/OR/NOT (three-valued), comparisons, IN, IS [NOT] NULL, LIKE, + - * / %,
  time-span literals (`10 minutes`), date arithmetic;
- functions: NOW, COALESCE, CONCAT, TO_LOWER, TO_UPPER, DATE_TRUNC, MV_COUNT, MV_CONCAT, CASE;
  aggregates COUNT, COUNT_DISTINCT, SUM, MIN, MAX, AVG.

As in Elasticsearch, a column no document has is an error ("Unknown column"), a multi-valued
field in a comparison yields null (so a filter on `sluice.detections` needs MV_EXPAND), and a
multi-valued BY key puts the row in one group per value. Anything outside the subset raises
`EsqlUnsupported` rather than being guessed at.
"""

from __future__ import annotations

import fnmatch
import re
from functools import cmp_to_key
from datetime import datetime, timedelta, timezone

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from esql_parser.EsqlBaseLexer import EsqlBaseLexer
from esql_parser.EsqlBaseParser import EsqlBaseParser as P

DEFAULT_LIMIT = 1000
DATE_FIELDS = {"@timestamp"}


class EsqlError(Exception):
    """The query is wrong (syntax, unknown column, type error), as Elasticsearch would say."""


class EsqlUnsupported(EsqlError):
    """Valid ES|QL that this evaluator does not implement."""


# --- parsing -------------------------------------------------------------------------------

class _Errors(ErrorListener):
    def __init__(self):
        self.messages = []

    def syntaxError(self, recognizer, offending, line, column, msg, e):  # noqa: N802 (ANTLR API)
        self.messages.append(f"line {line}:{column}: {msg}")


def syntax_errors(query: str) -> list[str]:
    """Every syntax error Elasticsearch's grammar reports for `query` (empty when it parses)."""
    return _parse_tree(query)[1]


def _parse_tree(query: str):
    errors = _Errors()
    lexer = EsqlBaseLexer(InputStream(query))
    lexer.removeErrorListeners()
    lexer.addErrorListener(errors)
    parser = P(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(errors)
    tree = parser.singleStatement()
    return tree, errors.messages


def parse(query: str) -> list[tuple]:
    """The query's commands as AST tuples; raises EsqlError on a syntax error."""
    tree, errors = _parse_tree(query)
    if errors:
        raise EsqlError("syntax error: " + "; ".join(errors))
    builder = _Builder(query)
    return builder.query(tree.query())


def _text(source: str, ctx) -> str:
    return source[ctx.start.start:ctx.stop.stop + 1]


def _unquote_identifier(text: str) -> str:
    if text.startswith("`") and text.endswith("`"):
        return text[1:-1].replace("``", "`")
    return text


def _string(token_text: str) -> str:
    if token_text.startswith('"""'):
        return token_text[3:-3]
    body = token_text[1:-1]
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), body)


_UNITS = {
    "millisecond": timedelta(milliseconds=1), "milliseconds": timedelta(milliseconds=1), "ms": timedelta(milliseconds=1),
    "second": timedelta(seconds=1), "seconds": timedelta(seconds=1), "sec": timedelta(seconds=1), "s": timedelta(seconds=1),
    "minute": timedelta(minutes=1), "minutes": timedelta(minutes=1), "min": timedelta(minutes=1),
    "hour": timedelta(hours=1), "hours": timedelta(hours=1), "h": timedelta(hours=1),
    "day": timedelta(days=1), "days": timedelta(days=1), "d": timedelta(days=1),
    "week": timedelta(weeks=1), "weeks": timedelta(weeks=1), "w": timedelta(weeks=1),
}


class _Builder:
    """Parse tree (ANTLR contexts) -> AST tuples."""

    def __init__(self, source: str):
        self.source = source

    def query(self, ctx) -> list[tuple]:
        if isinstance(ctx, P.SingleCommandQueryContext):
            src = ctx.sourceCommand()
            if src.fromCommand() is None:
                raise EsqlUnsupported(f"source command {_text(self.source, src)!r}")
            return [self.from_(src.fromCommand())]
        if isinstance(ctx, P.CompositeQueryContext):
            return self.query(ctx.query()) + [self.command(ctx.processingCommand())]
        raise EsqlUnsupported(f"query form {type(ctx).__name__}")

    def from_(self, ctx) -> tuple:
        spec = ctx.indexPatternAndMetadataFields()
        patterns = [_text(self.source, p) for p in spec.indexPattern()]
        metadata = [t.getText() for t in spec.metadata().UNQUOTED_SOURCE()] if spec.metadata() else []
        return ("from", patterns, metadata)

    def command(self, ctx) -> tuple:
        if ctx.whereCommand():
            return ("where", self.expr(ctx.whereCommand().booleanExpression()))
        if ctx.evalCommand():
            return ("eval", [self.field(f) for f in ctx.evalCommand().fields().field()])
        if ctx.statsCommand():
            stats = ctx.statsCommand()
            aggs = []
            if stats.aggFields():
                for agg in stats.aggFields().aggField():
                    name, expr = self.field(agg.field())
                    where = self.expr(agg.booleanExpression()) if agg.booleanExpression() else None
                    aggs.append((name, expr, where))
            groups = [self.field(f) for f in stats.fields().field()] if stats.fields() else []
            return ("stats", aggs, groups)
        if ctx.keepCommand():
            pats = ctx.keepCommand().qualifiedNamePatterns().qualifiedNamePattern()
            return ("keep", [".".join(_unquote_identifier(p.getText()) for p in pat.identifierPattern())
                             for pat in pats])
        if ctx.sortCommand():
            keys = []
            for order in ctx.sortCommand().orderExpression():
                desc = order.DESC() is not None
                nulls_first = desc if order.NULLS() is None else order.FIRST() is not None
                keys.append((self.expr(order.booleanExpression()), desc, nulls_first))
            return ("sort", keys)
        if ctx.limitCommand():
            value = self.constant(ctx.limitCommand().constant())
            if not isinstance(value, int):
                raise EsqlError("LIMIT needs an integer")
            return ("limit", value)
        if ctx.mvExpandCommand():
            return ("mv_expand", self.name(ctx.mvExpandCommand().qualifiedName()))
        raise EsqlUnsupported(f"command {_text(self.source, ctx).split()[0].upper()}")

    def field(self, ctx) -> tuple:
        expr = self.expr(ctx.booleanExpression())
        name = self.name(ctx.qualifiedName()) if ctx.qualifiedName() else _text(self.source, ctx.booleanExpression())
        return (name, expr)

    def name(self, ctx) -> str:
        parts = []
        for part in ctx.identifierOrParameter():
            if part.identifier() is None:
                raise EsqlUnsupported("query parameters")
            parts.append(_unquote_identifier(part.identifier().getText()))
        return ".".join(parts)

    def expr(self, ctx) -> tuple:
        if isinstance(ctx, P.BooleanDefaultContext):
            return self.expr(ctx.valueExpression())
        if isinstance(ctx, P.LogicalNotContext):
            return ("not", self.expr(ctx.booleanExpression()))
        if isinstance(ctx, P.LogicalBinaryContext):
            left, right = ctx.booleanExpression()
            return ("and" if ctx.AND() else "or", self.expr(left), self.expr(right))
        if isinstance(ctx, P.LogicalInContext):
            value, *items = ctx.valueExpression()
            return ("in", self.expr(value), [self.expr(i) for i in items], ctx.NOT() is not None)
        if isinstance(ctx, P.IsNullContext):
            return ("isnull", self.expr(ctx.valueExpression()), ctx.NOT() is not None)
        if isinstance(ctx, (P.RegexExpressionContext, P.RegexBooleanExpressionContext)):
            inner = ctx.regexBooleanExpression()
            if isinstance(inner, P.LikeExpressionContext):
                pattern = _string(inner.string().getText())
                return ("like", self.expr(inner.valueExpression()), pattern, inner.NOT() is not None)
            raise EsqlUnsupported(f"{_text(self.source, inner)!r}")
        if isinstance(ctx, P.ValueExpressionDefaultContext):
            return self.expr(ctx.operatorExpression())
        if isinstance(ctx, P.ComparisonContext):
            left, right = ctx.operatorExpression()
            return ("cmp", ctx.comparisonOperator().getText(), self.expr(left), self.expr(right))
        if isinstance(ctx, P.OperatorExpressionDefaultContext):
            return self.expr(ctx.primaryExpression())
        if isinstance(ctx, P.ArithmeticUnaryContext):
            inner = self.expr(ctx.operatorExpression())
            return ("neg", inner) if ctx.MINUS() else inner
        if isinstance(ctx, P.ArithmeticBinaryContext):
            left, right = ctx.operatorExpression()
            return ("arith", ctx.getChild(1).getText(), self.expr(left), self.expr(right))
        if isinstance(ctx, P.ConstantDefaultContext):
            return ("lit", self.constant(ctx.constant()))
        if isinstance(ctx, P.DereferenceContext):
            return ("col", self.name(ctx.qualifiedName()))
        if isinstance(ctx, P.ParenthesizedExpressionContext):
            return self.expr(ctx.booleanExpression())
        if isinstance(ctx, P.FunctionContext):
            fn = ctx.functionExpression()
            name = fn.functionName().getText().upper()
            if fn.mapExpression():
                raise EsqlUnsupported(f"named parameters of {name}")
            return ("fn", name, [self.expr(a) for a in fn.booleanExpression()], fn.ASTERISK() is not None)
        raise EsqlUnsupported(f"expression {_text(self.source, ctx)!r} ({type(ctx).__name__})")

    def constant(self, ctx):
        if isinstance(ctx, P.NullLiteralContext):
            return None
        if isinstance(ctx, P.BooleanLiteralContext):
            return ctx.getText().lower() == "true"
        if isinstance(ctx, P.IntegerLiteralContext):
            return int(ctx.getText())
        if isinstance(ctx, P.DecimalLiteralContext):
            return float(ctx.getText())
        if isinstance(ctx, P.StringLiteralContext):
            return _string(ctx.string().getText())
        if isinstance(ctx, P.QualifiedIntegerLiteralContext):
            amount = int(ctx.integerValue().getText())
            unit = ctx.UNQUOTED_IDENTIFIER().getText().lower()
            if unit not in _UNITS:
                raise EsqlUnsupported(f"time unit {unit!r}")
            return amount * _UNITS[unit]
        raise EsqlUnsupported(f"constant {_text(self.source, ctx)!r}")


# --- evaluation ----------------------------------------------------------------------------

def flatten(doc: dict, prefix: str = "") -> dict:
    """A JSON document as ES|QL columns: dotted names, lists as multi-values, [] and {} absent."""
    out = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            values = [v for v in value if v is not None and not isinstance(v, (dict, list))]
            if values:
                out[name] = values[0] if len(values) == 1 else values
        elif value is not None:
            out[name] = value
    for name in DATE_FIELDS & out.keys():
        out[name] = _to_date(out[name])
    return out


def _to_date(value):
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise EsqlError(f"not a date: {value!r}")


def _is_mv(v) -> bool:
    return isinstance(v, list)


def _values(v) -> list:
    return [] if v is None else (v if isinstance(v, list) else [v])


def _cmp_values(a, b):
    if isinstance(a, datetime) and isinstance(b, str):
        b = _to_date(b)
    if isinstance(b, datetime) and isinstance(a, str):
        a = _to_date(a)
    numeric = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        if type(a) is not type(b):
            raise EsqlError(f"cannot compare {a!r} with {b!r}")
    elif isinstance(a, numeric) and isinstance(b, numeric):
        pass
    elif type(a) is not type(b):
        raise EsqlError(f"cannot compare {type(a).__name__} {a!r} with {type(b).__name__} {b!r}")
    return a, b


_COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}

_AGGREGATES = {"COUNT", "COUNT_DISTINCT", "SUM", "MIN", "MAX", "AVG"}


class _Eval:
    def __init__(self, columns: set, now: datetime):
        self.columns = columns
        self.now = now

    def check(self, expr):
        """Raises on unknown columns and functions before any row is seen, as ES's verifier does."""
        kind = expr[0]
        if kind == "col" and expr[1] not in self.columns:
            raise EsqlError(f"Unknown column [{expr[1]}]")
        if kind == "fn" and expr[1] not in _FUNCTIONS and expr[1] not in _AGGREGATES:
            raise EsqlUnsupported(f"function {expr[1]}")
        for part in expr[1:]:
            if isinstance(part, tuple):
                self.check(part)
            elif isinstance(part, list):
                for item in part:
                    if isinstance(item, tuple):
                        self.check(item)

    def __call__(self, expr, row):
        kind = expr[0]
        if kind == "lit":
            return expr[1]
        if kind == "col":
            return row.get(expr[1])
        if kind == "not":
            v = self(expr[1], row)
            return None if v is None or _is_mv(v) else not v
        if kind in ("and", "or"):
            a, b = self(expr[1], row), self(expr[2], row)
            a, b = (None if _is_mv(a) else a), (None if _is_mv(b) else b)
            if kind == "and":
                if a is False or b is False:
                    return False
                return None if a is None or b is None else True
            if a is True or b is True:
                return True
            return None if a is None or b is None else False
        if kind == "isnull":
            v = self(expr[1], row)
            return (v is not None) if expr[2] else (v is None)
        if kind == "in":
            v = self(expr[1], row)
            if v is None or _is_mv(v):
                return None
            items = [self(i, row) for i in expr[2]]
            found = any(i is not None and not _is_mv(i) and _COMPARE["=="](*_cmp_values(v, i)) for i in items)
            if not found and any(i is None for i in items):
                return None
            return (not found) if expr[3] else found
        if kind == "like":
            v = self(expr[1], row)
            if v is None or _is_mv(v):
                return None
            if not isinstance(v, str):
                raise EsqlError(f"LIKE on a non-string value {v!r}")
            regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in expr[2])
            hit = re.fullmatch(regex, v, re.S) is not None
            return (not hit) if expr[3] else hit
        if kind == "cmp":
            a, b = self(expr[2], row), self(expr[3], row)
            if a is None or b is None or _is_mv(a) or _is_mv(b):
                return None
            return _COMPARE[expr[1]](*_cmp_values(a, b))
        if kind == "neg":
            v = self(expr[1], row)
            return None if v is None or _is_mv(v) else -v
        if kind == "arith":
            return _arith(expr[1], self(expr[2], row), self(expr[3], row))
        if kind == "fn":
            if expr[1] in _AGGREGATES:
                raise EsqlError(f"aggregate function {expr[1]} outside STATS")
            return _FUNCTIONS[expr[1]](self, expr[2], row)
        raise EsqlUnsupported(kind)


def _arith(op, a, b):
    if a is None or b is None or _is_mv(a) or _is_mv(b):
        return None
    if isinstance(a, datetime) or isinstance(b, datetime):
        if op == "+" and isinstance(b, timedelta):
            return a + b
        if op == "+" and isinstance(a, timedelta):
            return b + a
        if op == "-" and isinstance(a, datetime) and isinstance(b, timedelta):
            return a - b
        raise EsqlError(f"cannot compute {a!r} {op} {b!r}")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
        raise EsqlError(f"cannot compute {a!r} {op} {b!r}")
    if op in "/%" and b == 0:
        return None  # ES|QL: null and a warning
    if op == "/":
        return int(a / b) if isinstance(a, int) and isinstance(b, int) else a / b
    if op == "%":
        return int(a - b * int(a / b)) if isinstance(a, int) and isinstance(b, int) else a % b
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def _arity(name, args, lo, hi=None):
    hi = lo if hi is None else hi
    if not lo <= len(args) <= hi:
        raise EsqlError(f"{name} takes {lo}..{hi} arguments, got {len(args)}")


def _fn_now(ev, args, row):
    _arity("NOW", args, 0)
    return ev.now


def _fn_coalesce(ev, args, row):
    _arity("COALESCE", args, 1, 99)
    for a in args:
        v = ev(a, row)
        if v is not None:
            return v
    return None


def _string_fn(name, op):
    def fn(ev, args, row):
        _arity(name, args, 1)
        v = ev(args[0], row)
        if v is None:
            return None
        return [op(x) for x in v] if _is_mv(v) else op(v)
    return fn


def _fn_date_trunc(ev, args, row):
    _arity("DATE_TRUNC", args, 2)
    span, date = ev(args[0], row), ev(args[1], row)
    if date is None or span is None:
        return None
    if not isinstance(span, timedelta) or not isinstance(date, datetime):
        raise EsqlError("DATE_TRUNC(time span, date)")
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((date - epoch) // span) * span


def _fn_mv_count(ev, args, row):
    _arity("MV_COUNT", args, 1)
    v = ev(args[0], row)
    return None if v is None else len(_values(v))


def _fn_mv_concat(ev, args, row):
    _arity("MV_CONCAT", args, 2)
    v, sep = ev(args[0], row), ev(args[1], row)
    return None if v is None or sep is None else sep.join(str(x) for x in _values(v))


def _fn_concat(ev, args, row):
    _arity("CONCAT", args, 2, 99)
    parts = [ev(a, row) for a in args]
    if any(p is None or _is_mv(p) for p in parts):
        return None
    if not all(isinstance(p, str) for p in parts):
        raise EsqlError("CONCAT of non-string values")
    return "".join(parts)


def _fn_case(ev, args, row):
    if len(args) < 2:
        raise EsqlError("CASE needs a condition and a value")
    for i in range(0, len(args) - 1, 2):
        if ev(args[i], row) is True:
            return ev(args[i + 1], row)
    return ev(args[-1], row) if len(args) % 2 else None


_FUNCTIONS = {
    "NOW": _fn_now, "COALESCE": _fn_coalesce,
    "TO_LOWER": _string_fn("TO_LOWER", str.lower), "TO_UPPER": _string_fn("TO_UPPER", str.upper),
    "DATE_TRUNC": _fn_date_trunc, "MV_COUNT": _fn_mv_count, "MV_CONCAT": _fn_mv_concat,
    "CASE": _fn_case, "CONCAT": _fn_concat,
}


def _aggregate(ev, expr, rows):
    if expr[0] != "fn" or expr[1] not in _AGGREGATES:
        raise EsqlUnsupported(f"STATS expression {expr!r} (only plain aggregate calls)")
    name, args, star = expr[1], expr[2], expr[3]
    if name == "COUNT" and star:
        return len(rows)
    if len(args) != 1:
        raise EsqlError(f"{name} takes one argument")
    values = [x for r in rows for x in _values(ev(args[0], r))]
    if name == "COUNT":
        return len(values)
    if name == "COUNT_DISTINCT":
        return len(set(values))
    if not values:
        return None
    if name in ("SUM", "AVG"):
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
            raise EsqlError(f"{name} of non-numeric values")
        total = sum(values)
        return total if name == "SUM" else total / len(values)
    return min(values) if name == "MIN" else max(values)


def _order(desc, nulls_first):
    """A comparator for SORT: nulls placed as asked, values compared as ES|QL does."""
    def compare(a, b):
        if a is None or b is None:
            if a is None and b is None:
                return 0
            return (-1 if nulls_first else 1) if a is None else (1 if nulls_first else -1)
        x, y = _cmp_values(min(_values(a)), min(_values(b)))
        r = (x > y) - (x < y)
        return -r if desc else r
    return compare


def run(query, documents, now: datetime | None = None) -> list[dict]:
    """Evaluates `query` (text or parsed AST) over `documents`: dicts with their index name in
    `_index` and optionally `_id`. Returns the result rows as dicts of column -> value."""
    commands = parse(query) if isinstance(query, str) else query
    now = now or datetime.now(timezone.utc)
    kind, patterns, metadata = commands[0]
    assert kind == "from"
    docs = [d for d in documents if any(fnmatch.fnmatchcase(d.get("_index", ""), p) for p in patterns)]
    if not docs:
        raise EsqlError(f"Unknown index [{','.join(patterns)}]")
    rows = []
    for d in docs:
        source = {k: v for k, v in d.items() if not k.startswith("_")}
        row = flatten(source)
        for m in metadata:
            if m not in ("_id", "_index", "_version"):
                raise EsqlUnsupported(f"metadata field {m}")
            row[m] = d.get(m, 1 if m == "_version" else None)
        rows.append(row)
    columns = set().union(*rows)
    ev = _Eval(columns, now)
    limit = DEFAULT_LIMIT
    for command in commands[1:]:
        kind = command[0]
        if kind == "where":
            ev.check(command[1])
            rows = [r for r in rows if ev(command[1], r) is True]
        elif kind == "eval":
            for name, expr in command[1]:
                ev.check(expr)
                for r in rows:
                    r[name] = ev(expr, r)
                ev.columns = ev.columns | {name}
        elif kind == "mv_expand":
            name = command[1]
            ev.check(("col", name))
            rows = [dict(r, **{name: v}) for r in rows for v in (_values(r.get(name)) or [None])]
        elif kind == "stats":
            _, aggs, groups = command
            for _, expr in groups:
                ev.check(expr)
            for _, expr, where in aggs:
                if expr[0] != "fn" or expr[1] not in _AGGREGATES:
                    raise EsqlUnsupported(f"STATS expression {expr!r}")
                for arg in expr[2]:
                    ev.check(arg)
                if where is not None:
                    ev.check(where)
            buckets: dict[tuple, list] = {}
            for r in rows:
                keys = [[None] if not _values(v) else _values(v) for v in (ev(e, r) for _, e in groups)]
                combos = [()]
                for options in keys:
                    combos = [c + (o,) for c in combos for o in options]
                for combo in combos:
                    buckets.setdefault(combo, []).append(r)
            if not groups and not buckets:
                buckets[()] = []
            out = []
            for combo, members in buckets.items():
                row = {}
                for name, expr, where in aggs:
                    chosen = members if where is None else [m for m in members if ev(where, m) is True]
                    row[name] = _aggregate(ev, expr, chosen)
                for (name, _), value in zip(groups, combo):
                    row[name] = value
                out.append(row)
            rows = out
            ev.columns = {n for n, *_ in aggs} | {n for n, _ in groups}
        elif kind == "keep":
            chosen = []
            for pattern in command[1]:
                matches = sorted(c for c in ev.columns if fnmatch.fnmatchcase(c, pattern))
                if not matches and "*" not in pattern:
                    raise EsqlError(f"Unknown column [{pattern}]")
                chosen += [m for m in matches if m not in chosen]
            rows = [{c: r.get(c) for c in chosen} for r in rows]
            ev.columns = set(chosen)
        elif kind == "sort":
            for expr, desc, nulls_first in reversed(command[1]):
                ev.check(expr)
                order = _order(desc, nulls_first)
                rows.sort(key=cmp_to_key(lambda r1, r2, e=expr, o=order: o(ev(e, r1), ev(e, r2))))
        elif kind == "limit":
            limit = command[1]
            rows = rows[:limit]
        else:
            raise EsqlUnsupported(kind)
    return rows[:DEFAULT_LIMIT] if limit == DEFAULT_LIMIT else rows
