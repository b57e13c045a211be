"""The parameter reference (docs/parameters.md), generated from the parameter models' field descriptions by
``cvlib params --markdown``: one table per section, every key with its type, default and meaning."""
from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cvlib.params import Study

HEADER = """# Parameter reference

Generated from the field descriptions of the models in `cvlib/params/` by `cvlib params --markdown > docs/parameters.md`
(a test checks that this file equals the command's output). One YAML file per study; unknown keys, wrong types or
values, missing input files and mapped columns that are not in the file stop the run with exit code 2 before
anything runs. A key of a list of items (`strategy.actions`, `rfm.segments`, ...) is written `actions[].name`.
"""


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The parameter models inside a type (`Model`, `Model | None`, `list[Model]`, `dict[str, Model]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return origin is list


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("NoneType", "None").replace("cvlib.params.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("datetime.date", "date")
    return text.replace("Literal[", "one of [")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default is PydanticUndefined else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    try:
        return json.dumps(value if not isinstance(value, tuple) else list(value), ensure_ascii=False, default=str)
    except TypeError:
        return str(value)


def rows(model: type[BaseModel], prefix: str = "", seen: frozenset = frozenset()) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every field of `model` and of the models inside it."""
    out = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        nested = [m for m in _models(field.annotation) if m not in seen]
        if not nested or field.description:
            out.append((key, "section" if nested else _type_name(field.annotation), _default(field),
                        " ".join((field.description or "").split())))
        for m in nested:
            out += rows(m, key + ("[]." if _is_list(field.annotation) else "."), seen | {m})
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The parameter reference as Markdown."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    for row in rows(Study):
        if row[0] == "base_dir":
            continue
        sections.setdefault(row[0].split(".")[0].split("[")[0] if "." in row[0] else "study", []).append(row)
    parts = [HEADER]
    for section, items in sections.items():
        parts.append(f"\n## `{section}`\n\n| key | type | default | meaning |\n|---|---|---|---|")
        parts += [f"| `{k}` | {_cell(t)} | `{_cell(d)}` | {_cell(m)} |" for k, t, d, m in items]
    return "\n".join(parts) + "\n"


def text() -> str:
    """The parameter reference as plain lines: key (type, default): meaning."""
    return "".join(f"{k} ({t}, default {d}): {m}\n" for k, t, d, m in rows(Study) if k != "base_dir")
