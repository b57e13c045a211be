"""The foundations of the parameter models: the strict base model, bounded YAML loading, short values in
messages."""
from __future__ import annotations

import reprlib
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


def short_repr(value: Any, width: int = 120) -> str:
    """repr of a value, cut to `width` characters without building the whole text of a huge value."""

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel = width, width, 6, 6, 3
    text = r.repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- inputs
