"""A small, safe expression language for the rules a parameter file can carry (strategy groups' `when`).

A rule is parsed with Python's `ast` and only an allow-list of nodes is accepted: column names, numbers,
strings, booleans, comparisons (chained too), `and` / `or` / `not`, `in` / `not in` a list of constants, and
arithmetic (`+ - * / // %`, unary minus). Attribute access, calls, subscripts, `@` references, lambdas,
comprehensions and names starting with an underscore are refused, so nothing in a parameter file can run
code or touch a file. Rules are evaluated vectorised over a DataFrame, without `eval`.

Resource limits: a rule has at most MAX_LENGTH characters and MAX_DEPTH levels of nesting, numbers at most
MAX_NUMBER in size, text constants at most MAX_TEXT characters, lists at most MAX_ITEMS items; text takes no part
in arithmetic (no 'x' * 2000000000); arithmetic on constants alone is worked out when the rule is checked, so a
division by zero or an overflow is refused before anything runs.

Missing values (three-valued logic): a comparison, `in` or `not in` with a missing value is unknown, `not` of
unknown is unknown, `and` / `or` follow Kleene's rules (unknown and false is false, unknown or true is true), and a
rule that is unknown for a customer does not match them. So `cross_sell_rule != ''` does not match customers who
have no rule at all.
"""
from __future__ import annotations

import ast
import difflib
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
MAX_LENGTH = 2000
MAX_DEPTH = 40
MAX_NUMBER = 10 ** 15
MAX_TEXT = 200
MAX_ITEMS = 200


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

    @property
    def arithmetic_names(self) -> set[str]:
        """Columns the rule does arithmetic on (which must hold numbers)."""
        out: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.BinOp) or (isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not)):
                out |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        return out

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


def _depth(tree: ast.AST) -> int:
    """Nesting depth of a tree, walked without recursion (a deeply nested rule must not exhaust the stack)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(node))
    return deepest


def _fold(node: ast.AST, text: str) -> object:
    """The value of an arithmetic expression on constants alone (None when it involves a column): a division by
    zero, an overflow or a number past MAX_NUMBER is refused here, when the rule is checked."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _fold(node.operand, text)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        a, b = _fold(node.left, text), _fold(node.right, text)
        if a is None or b is None:
            if b == 0 and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
                raise _refuse(node, "division by zero", text)
            return None
        try:
            v = _ARITH[type(node.op)](a, b)
        except ZeroDivisionError:
            raise _refuse(node, "division by zero", text) from None
        except OverflowError:
            raise _refuse(node, "a number too large", text) from None
        if not np.isfinite(float(v)) or abs(v) > MAX_NUMBER:
            raise _refuse(node, f"a number beyond {MAX_NUMBER:,} in size", text)
        return v
    return None


def _check(node: ast.AST, text: str) -> None:
    """Refuse (ExpressionError naming the place) anything outside the language; fold constant arithmetic."""
    check = _CHECKS.get(type(node))
    if check is None:
        what = {ast.Attribute: "attribute access ('.')", ast.Call: "a function call",
                ast.Subscript: "a subscript ('[]')", ast.Lambda: "a lambda",
                ast.NamedExpr: "an assignment (':=')"}.get(type(node), f"'{type(node).__name__}'")
        raise _refuse(node, f"{what} is not allowed", text)
    check(node, text)


def _check_bool(node: ast.BoolOp, text: str) -> None:
    for v in node.values:
        _check(v, text)


def _check_unary(node: ast.UnaryOp, text: str) -> None:
    if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
        raise _refuse(node, "operator '~' is not allowed (use 'not')", text)
    _check(node.operand, text)


def _check_arithmetic(node: ast.BinOp, text: str) -> None:
    if type(node.op) not in _ARITH:
        sym = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Pow: "**", ast.MatMult: "@",
               ast.LShift: "<<", ast.RShift: ">>"}.get(type(node.op), type(node.op).__name__)
        hint = " (use 'and' / 'or')" if sym in "&|" else ""
        raise _refuse(node, f"operator '{sym}' is not allowed{hint}", text)
    for side in (node.left, node.right):
        if isinstance(side, ast.Constant) and isinstance(side.value, str):
            raise _refuse(node, "text cannot take part in arithmetic", text)
    _check(node.left, text)
    _check(node.right, text)
    _fold(node, text)


def _check_compare(node: ast.Compare, text: str) -> None:
    _check(node.left, text)
    for op, right in zip(node.ops, node.comparators):
        if isinstance(op, (ast.In, ast.NotIn)):
            _check_member_list(right, text)
        elif type(op) in _COMPARE:
            _check(right, text)
        else:
            raise _refuse(node, "comparison 'is' is not allowed (use == or !=)", text)


def _check_member_list(right: ast.AST, text: str) -> None:
    if not isinstance(right, (ast.List, ast.Tuple, ast.Set)) or not all(
            isinstance(e, ast.Constant) and _constant_ok(e.value) for e in right.elts):
        raise _refuse(right, "'in' takes a list of constants, e.g. segment in ['Lost', 'At Risk']", text)
    if len(right.elts) > MAX_ITEMS:
        raise _refuse(right, f"a list of more than {MAX_ITEMS} items", text)


def _check_name(node: ast.Name, text: str) -> None:
    if node.id.startswith("_"):
        raise _refuse(node, f"name {node.id!r} is not allowed (names may not start with '_')", text)


def _check_constant(node: ast.Constant, text: str) -> None:
    if not _constant_ok(node.value):
        raise _refuse(node, f"constant {str(node.value)[:40]!r} is not allowed", text)


_CHECKS: dict[type, Any] = {
    ast.Expression: lambda node, text: _check(node.body, text), ast.BoolOp: _check_bool, ast.UnaryOp: _check_unary,
    ast.BinOp: _check_arithmetic, ast.Compare: _check_compare, ast.Name: _check_name, ast.Constant: _check_constant,
}


def _constant_ok(v: object) -> bool:
    if isinstance(v, str):
        return len(v) <= MAX_TEXT
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return bool(np.isfinite(float(v))) and abs(v) <= MAX_NUMBER if not isinstance(v, int) or v.bit_length() < 64 \
            else False
    return v is None or isinstance(v, bool)


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
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"rule {text[:60]!r}... is nested too deeply") from None
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"rule {text[:60]!r}{'...' if len(text) > 60 else ''} is nested more than {MAX_DEPTH} "
                              "levels deep")
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


def _truth(v: object, index: pd.Index) -> pd.Series:
    """A value as a three-valued truth (pandas' nullable boolean: True, False, or missing = unknown)."""
    s = v if isinstance(v, pd.Series) else pd.Series(v, index=index)
    if isinstance(s.dtype, pd.BooleanDtype):
        return s
    missing = s.isna()
    if pd.api.types.is_bool_dtype(s.dtype):
        out = s.astype("boolean")
    elif pd.api.types.is_numeric_dtype(s.dtype):
        out = (s.fillna(0) != 0).astype("boolean")
    else:
        out = s.map(lambda x: bool(x) if x is not None and x == x else False).astype("boolean")
    out[missing.to_numpy()] = pd.NA
    return out


def _as_bool(v: object, index: pd.Index) -> pd.Series:
    """The rule's decision: unknown does not match."""
    return _truth(v, index).fillna(False).astype(bool)


def _missing(v: object, index: pd.Index) -> np.ndarray:
    return (v.isna() if isinstance(v, pd.Series) else pd.Series(v, index=index).isna()).to_numpy()


def _numeric(v: object, node: ast.AST) -> object:
    """Arithmetic takes numbers only (a text column times a large number would build huge strings)."""
    if isinstance(v, pd.Series) and not (pd.api.types.is_numeric_dtype(v.dtype) or pd.api.types.is_bool_dtype(v.dtype)):
        raise ExpressionError(f"arithmetic on column {getattr(node, 'id', '?')!r}, which holds text")
    return v


def _value(node: ast.AST, df: pd.DataFrame) -> object:
    if isinstance(node, ast.Expression):
        return _value(node.body, df)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return df[node.id]
    if isinstance(node, ast.BoolOp):
        parts = [_truth(_value(v, df), df.index) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)  # Kleene logic on unknowns
        return out
    if isinstance(node, ast.UnaryOp):
        v = _value(node.operand, df)
        if isinstance(node.op, ast.Not):
            return ~_truth(v, df.index)  # not unknown is unknown
        v = _numeric(v, node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        left, right = _numeric(_value(node.left, df), node.left), _numeric(_value(node.right, df), node.right)
        with np.errstate(all="ignore"):
            return _ARITH[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        out = pd.Series(True, index=df.index, dtype="boolean")
        left = _value(node.left, df)
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                values = [e.value for e in right_node.elts]
                s = left if isinstance(left, pd.Series) else pd.Series(left, index=df.index)
                hit = s.isin(values).fillna(False).astype(bool)
                part = pd.Series(~hit if isinstance(op, ast.NotIn) else hit, index=df.index, dtype="boolean")
                part[_missing(s, df.index)] = pd.NA
                out &= part
                continue
            right = _value(right_node, df)
            part = _truth(_COMPARE[type(op)](left, right), df.index).astype("boolean")
            part[_missing(left, df.index) | _missing(right, df.index)] = pd.NA  # a comparison with missing: unknown
            out &= part
            left = right
        return out
    raise ExpressionError(f"cannot evaluate {ast.dump(node)}")  # unreachable after _check


def evaluate(rule: Rule | str, df: pd.DataFrame) -> pd.Series:
    """The rule's truth value for every row of df (unknown, from missing values, does not match)."""
    rule = parse(rule) if isinstance(rule, str) else rule
    check_names(rule, df.columns)
    return _as_bool(_value(rule.tree, df), df.index)
