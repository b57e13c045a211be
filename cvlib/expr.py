"""A small, safe expression language for the rules a parameter file can carry (strategy groups' `when`).

A rule is parsed with Python's `ast` and only an allow-list of nodes is accepted: column names, numbers,
strings, booleans, comparisons (chained too), `and` / `or` / `not`, `in` / `not in` a list of constants, and
arithmetic (`+ - * / // %`, unary minus). Attribute access, calls, subscripts, `@` references, lambdas,
comprehensions and names starting with an underscore are refused, so nothing in a parameter file can run
code or touch a file. Rules are evaluated vectorised over a DataFrame, without `eval`.
"""
from __future__ import annotations

import ast
import difflib
import operator
from dataclasses import dataclass

import numpy as np
import pandas as pd

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
MAX_LENGTH = 2000


class ExpressionError(ValueError):
    """A rule that is not in the allowed language, or names a column that does not exist."""


@dataclass(frozen=True)
class Rule:
    """A parsed, checked rule."""

    text: str
    tree: ast.Expression

    @property
    def names(self) -> set[str]:
        return {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)}

    def literals(self) -> list[tuple[str, object]]:
        """(column, constant) pairs the rule compares directly (`segment == 'Lost'`, `clv_tier in ['High']`)."""
        out: list[tuple[str, object]] = []
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for a, b in zip(operands, operands[1:]):
                for x, y in ((a, b), (b, a)):
                    if isinstance(x, ast.Name):
                        if isinstance(y, ast.Constant):
                            out.append((x.id, y.value))
                        elif isinstance(y, (ast.List, ast.Tuple, ast.Set)):
                            out += [(x.id, e.value) for e in y.elts if isinstance(e, ast.Constant)]
        return out


def _refuse(node: ast.AST, why: str, text: str) -> ExpressionError:
    col = getattr(node, "col_offset", None)
    where = f" at character {col + 1}" if col is not None else ""
    return ExpressionError(f"{why}{where} in rule {text!r}. Rules may use column names, numbers, 'text', "
                           "comparisons, and/or/not, 'in [...]' and + - * /; nothing else.")


def _check(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.Expression):
        return _check(node.body, text)
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, text)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            raise _refuse(node, "operator '~' is not allowed (use 'not')", text)
        return _check(node.operand, text)
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITH:
            sym = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Pow: "**", ast.MatMult: "@",
                   ast.LShift: "<<", ast.RShift: ">>"}.get(type(node.op), type(node.op).__name__)
            hint = " (use 'and' / 'or')" if sym in "&|" else ""
            raise _refuse(node, f"operator '{sym}' is not allowed{hint}", text)
        _check(node.left, text)
        return _check(node.right, text)
    if isinstance(node, ast.Compare):
        _check(node.left, text)
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, (ast.List, ast.Tuple, ast.Set)) or not all(
                        isinstance(e, ast.Constant) and _constant_ok(e.value) for e in right.elts):
                    raise _refuse(right, "'in' takes a list of constants, e.g. segment in ['Lost', 'At Risk']", text)
            elif type(op) in _COMPARE:
                _check(right, text)
            else:
                raise _refuse(node, "comparison 'is' is not allowed (use == or !=)", text)
        return
    if isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise _refuse(node, f"name {node.id!r} is not allowed (names may not start with '_')", text)
        return
    if isinstance(node, ast.Constant):
        if not _constant_ok(node.value):
            raise _refuse(node, f"constant {node.value!r} is not allowed", text)
        return
    what = {ast.Attribute: "attribute access ('.')", ast.Call: "a function call", ast.Subscript: "a subscript ('[]')",
            ast.Lambda: "a lambda", ast.NamedExpr: "an assignment (':=')"}.get(type(node), f"'{type(node).__name__}'")
    raise _refuse(node, f"{what} is not allowed", text)


def _constant_ok(v: object) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def parse(text: str) -> Rule:
    """Parse and check a rule; ExpressionError says what is not allowed and where."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("a rule must be a non-empty expression, e.g. \"churn_probability >= 0.5\"")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"a rule may be at most {MAX_LENGTH} characters")
    if "@" in text:
        raise ExpressionError(f"'@' references are not allowed in rule {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"rule {text!r} is not a valid expression: {exc.msg} at character "
                              f"{exc.offset or 0}") from None
    _check(tree, text)
    return Rule(text, tree)


def check_names(rule: Rule, columns: set[str] | list[str]) -> None:
    """ExpressionError naming every column the rule uses that is not among `columns`."""
    cols = set(columns)
    unknown = sorted(rule.names - cols)
    if unknown:
        hints = []
        for u in unknown:
            close = difflib.get_close_matches(u, sorted(cols), n=1, cutoff=0.6)
            hints.append(f"{u!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ExpressionError(f"rule {rule.text!r} uses unknown column(s) {', '.join(hints)}. "
                              f"Columns: {', '.join(sorted(cols))}.")


def _as_bool(v: object, index: pd.Index) -> pd.Series:
    s = v if isinstance(v, pd.Series) else pd.Series(v, index=index)
    if not (pd.api.types.is_bool_dtype(s.dtype) or isinstance(s.dtype, pd.BooleanDtype)):
        if s.dtype == object or pd.api.types.is_numeric_dtype(s.dtype):
            s = s.astype("boolean")
    return s.fillna(False).astype(bool)


def _value(node: ast.AST, df: pd.DataFrame) -> object:
    if isinstance(node, ast.Expression):
        return _value(node.body, df)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return df[node.id]
    if isinstance(node, ast.BoolOp):
        parts = [_as_bool(_value(v, df), df.index) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.UnaryOp):
        v = _value(node.operand, df)
        if isinstance(node.op, ast.Not):
            return ~_as_bool(v, df.index)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        with np.errstate(all="ignore"):
            return _ARITH[type(node.op)](_value(node.left, df), _value(node.right, df))
    if isinstance(node, ast.Compare):
        out = pd.Series(True, index=df.index)
        left = _value(node.left, df)
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                values = [e.value for e in right_node.elts]
                s = left if isinstance(left, pd.Series) else pd.Series(left, index=df.index)
                hit = s.isin(values).fillna(False).astype(bool)
                out &= ~hit if isinstance(op, ast.NotIn) else hit
                continue
            right = _value(right_node, df)
            out &= _as_bool(_COMPARE[type(op)](left, right), df.index)
            left = right
        return out
    raise ExpressionError(f"cannot evaluate {ast.dump(node)}")  # unreachable after _check


def evaluate(rule: Rule | str, df: pd.DataFrame) -> pd.Series:
    """The rule's truth value for every row of df (missing values count as False)."""
    rule = parse(rule) if isinstance(rule, str) else rule
    check_names(rule, df.columns)
    return _as_bool(_value(rule.tree, df), df.index)
