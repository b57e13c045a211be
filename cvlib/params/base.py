"""The foundations of the parameter models: the strict base model, bounded YAML loading, short values in
messages."""
from __future__ import annotations

import reprlib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
)

EXAMPLE_PREFIX = "example://"
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
MAX_ALIASES = 20  # YAML aliases a parameter file may use: k aliases expand a value at most e^(k/e) times
MAX_PARAMS_BYTES = 1_000_000


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only, no tags that build objects) that refuses more than MAX_ALIASES
    aliases, so a small file cannot expand into an exponentially large value."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name), line {mark.line + 1}: parameter "
                                     "files do not need them; write the values out")
        return super().compose_node(parent, index)

    def construct_object(self, node, deep=False):  # type: ignore[no-untyped-def]
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # the date 2024-02-30, a number of thousands of digits
            value = node.value if isinstance(node.value, str) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {value[:40] + ('...' if len(value) > 40 else '')!r}: {str(exc)[:120]}",
                node.start_mark) from None


def safe_yaml(text: str) -> Any:
    """Parse YAML text as plain data with a bound on aliases (yaml.YAMLError otherwise, also for a value YAML cannot
    build: the date 2024-02-30, a number of thousands of digits)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  # a SafeLoader subclass
    except (ValueError, OverflowError) as exc:
        msg = str(exc)
        raise yaml.YAMLError(f"a value cannot be read: {msg[:200]}") from None


def _allows_none(annotation: Any) -> bool:
    return annotation is None or annotation is Any or type(None) in typing.get_args(annotation)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The parameter model a field holds (itself, or the items of a list of them), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def empty_values(model: type[BaseModel], data: Any, prefix: str = "") -> list[str]:
    """The values written empty (null) in `data` that the study needs: a field that takes no null, or one a model
    lists in FILL_WHEN_EMPTY (a KPI's target), each with what to write ('path: meaning')."""
    out: list[str] = []
    if not isinstance(data, dict):
        return out
    fill = getattr(model, "FILL_WHEN_EMPTY", ())
    for key, value in data.items():
        f = model.model_fields.get(key) if isinstance(key, str) else None
        if f is None:
            continue
        if value is None and (not _allows_none(f.annotation) or key in fill):
            out.append(f"{prefix}{key}: {f.description or 'a value'}")
        sub = _model_in(f.annotation)
        if sub is not None and isinstance(value, dict):
            out += empty_values(sub, value, f"{prefix}{key}.")
        elif sub is not None and isinstance(value, list):
            for i, item in enumerate(value):
                out += empty_values(sub, item, f"{prefix}{key}.{i}.")
    return out


def short_repr(value: Any, width: int = 120) -> str:
    """repr of a value, cut to `width` characters without building the whole text of a huge value."""

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel = width, width, 6, 6, 3
    text = r.repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- inputs
