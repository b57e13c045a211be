"""The report language: message catalogues (one YAML file per language in `cvlib/locales/`) and the number,
money and date formats of each language.

Every heading, sentence, column label, figure title and axis label a report shows comes from a catalogue
through `t` (text by key) or `label` (a column or model name). The language comes from the study: a stage's
entry point speaks its study's `report.language` for the length of the call (`in_study_language`), a page is
written inside `speaking(language)`, and a notebook session takes it from `report.setup` (`use`, for that
kernel's context only). There is no module-level language to leak from one study into another; exported files
keep their English column names. Values put into a message are formatted by the caller (`money`, `number`,
`date`, `pct`), so a message never decides how a number looks.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import string
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

LOCALES = Path(__file__).parent / "locales"
LANGUAGES = ("en", "zh")
SYMBOLS = {"CNY": "¥", "RMB": "¥", "JPY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "HKD": "HK$"}

#: the language of the current context (a notebook kernel's, or a stage call's); English unless set
_LANGUAGE: contextvars.ContextVar[str] = contextvars.ContextVar("cvlib_language", default="en")


class ConsultantNote(str):
    """A note meant for the consultant (a parameter to set): `report.notes` shows it as a consultant note, which
    the client's rendering leaves out."""


def for_consultant(key: str, **values: Any) -> ConsultantNote:
    """The message `key` as a consultant note."""
    return ConsultantNote(t(key, **values))


class CatalogueError(KeyError):
    """A message key missing from a catalogue: a programming error, caught by the catalogue tests."""


@functools.cache
def catalogue(language: str) -> dict[str, Any]:
    """The parsed catalogue of a language (cached)."""
    if language not in LANGUAGES:
        raise ValueError(f"report.language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    return yaml.safe_load((LOCALES / f"{language}.yaml").read_text(encoding="utf-8"))


def use(language: str) -> None:
    """Make `language` the language of the current context from now on (a notebook session: `report.setup`)."""
    catalogue(language)  # refuses an unknown language
    _LANGUAGE.set(language)


def current() -> str:
    """The language of the current context."""
    return _LANGUAGE.get()


@contextlib.contextmanager
def speaking(language: str) -> Iterator[str]:
    """Messages in `language` inside the block; the language before it comes back after (also on an error)."""
    catalogue(language)
    token = _LANGUAGE.set(language)
    try:
        yield language
    finally:
        _LANGUAGE.reset(token)


def in_study_language(func: Callable) -> Callable:
    """A stage entry point `func(study, ...)` that words its notes and tables in `study.report.language`, whatever
    the caller's language, and leaves the caller's language as it was."""

    @functools.wraps(func)
    def wrapper(study: Any, *args: Any, **kwargs: Any) -> Any:
        with speaking(study.report.language):
            return func(study, *args, **kwargs)

    return wrapper


def _lookup(section: str, key: str, language: str | None) -> Any:
    node: Any = catalogue(language or _LANGUAGE.get())[section]
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise CatalogueError(f"{section}.{key} is not in the {language or _LANGUAGE.get()} catalogue")
        node = node[part]
    return node


def t(key: str, language: str | None = None, **values: Any) -> str:
    """The message `key` in the current language with `{name}` fields filled from values (as given: format
    numbers with `money`, `number`, `pct` or `date` first)."""
    text = _lookup("text", key, language)
    return text.format(**values) if values else text


_KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


def is_key(text: str) -> bool:
    """Whether `text` names a catalogue message (dotted lower-case words such as 'rfm.observed')."""
    return bool(_KEY.match(text)) and has(text)


def name(value: str, language: str | None = None) -> str:
    """A default segment, group, tier or cell name in the report language; names set in params are shown as
    written."""
    cat = catalogue(language or _LANGUAGE.get())
    names = cat.get("names", {})
    if value in names:
        return names[value]
    if value in cat["labels"]:  # a column or driver name shown as a value (e.g. the driver column)
        return cat["labels"][value]
    if " · " in value:  # a cluster profile such as 'recent · frequent · high spend'
        return " · ".join(names.get(part, part) for part in value.split(" · "))
    for pattern, replacement in cat.get("patterns", []):  # generated names such as 'LMG share of R² (300 ...)'
        m = re.match(pattern, value)
        if m:  # a captured name (a model, a column) is itself shown in the language: 'predicted (bgnbd)'
            return re.sub(r"\\(\d)", lambda g: _captured(m.group(int(g.group(1))), cat), replacement)
    return value


def _captured(part: str, cat: dict) -> str:
    """A part captured from a generated name: a catalogue label or name when it is one, else as written."""
    return cat["labels"].get(part) or cat.get("names", {}).get(part) or part


def text(key_or_text: str, **values: Any) -> str:
    """A catalogue message when `key_or_text` is a message key, else the text itself (e.g. a name from params)."""
    if is_key(key_or_text):
        return t(key_or_text, **values)
    return key_or_text.format(**values) if values else key_or_text


def has(key: str, language: str | None = None) -> bool:
    try:
        _lookup("text", key, language)
        return True
    except CatalogueError:
        return False


def fields(text: str) -> set[str]:
    """The `{name}` fields of a message (to check that two catalogues agree)."""
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def label(name: str, language: str | None = None) -> str:
    """The human label of a column, driver or model name; names the catalogue does not list (e.g. a client's
    own driver columns) are shown with spaces for underscores."""
    cat = catalogue(language or _LANGUAGE.get())
    if name in cat["labels"]:
        return cat["labels"][name]
    if name in cat.get("names", {}):
        return cat["names"][name]
    return str(name).replace("_", " ")


def unit(name: str, language: str | None = None) -> str:
    """A unit ('days', 'probability', '0-100', 'x') in the report language."""
    return catalogue(language or _LANGUAGE.get()).get("units", {}).get(name, name)


def currency_unit(currency: str) -> str:
    """The currency as a unit in headers and axes: its symbol in Chinese (¥), its code in English (USD)."""
    return symbol(currency) if current() == "zh" else currency


def word(value: Any, language: str | None = None) -> str:
    """True/False as the language's yes/no."""
    return t("common.yes" if value else "common.no", language)


def notebook_text(notebook: str, key: str, language: str | None = None) -> str:
    """A markdown cell of a stage notebook (the runner puts it in place of the notebook's English text)."""
    return _lookup("notebooks", f"{notebook}.{key}", language)


def localise_notebook(nb: Any, notebook: str, language: str) -> Any:
    """Put the catalogue's text of `language` into every markdown cell tagged `cvlib_text` (in place)."""
    for cell in nb.cells:
        key = cell.get("metadata", {}).get("cvlib_text")
        if cell.cell_type == "markdown" and key:  # the anchor lets the index and the contents link here
            anchor = f'<a id="{key}" class="cvlib-anchor"></a>\n\n'
            cell.source = anchor + notebook_text(notebook, key, language).rstrip("\n")
    return nb


# --------------------------------------------------------------------------- formats
def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, (float, np.floating)) and np.isnan(v))


def symbol(currency: str) -> str:
    """The currency's symbol where it has a common one (¥, $, €, £), else its code."""
    return SYMBOLS.get(currency.upper(), currency)


def _wan(v: float, decimals: int = 2) -> str | None:
    """Chinese large-number units: 1.23亿 (10^8), 45.60万 (10^4); None below 10,000."""
    a = abs(v)
    if a >= 1e8:
        return f"{v / 1e8:,.{decimals}f}亿"
    if a >= 1e4:
        return f"{v / 1e4:,.{decimals}f}万"
    return None


def money(v: Any, currency: str, *, decimals: int | None = None, signed: bool = False) -> str:
    """An amount of money in the current language: '12,345 USD' (en), '¥1.23万' (zh, 万/亿 from 10,000).
    Without `decimals`, cents are shown below 100 and whole units above."""
    if _missing(v):
        return "–"
    sign = "+" if signed and v > 0 else ""
    if current() == "zh":
        big = _wan(float(v))
        if big is None:
            d = 2 if decimals is None and abs(v) < 100 else 0 if decimals is None else decimals
            big = f"{v:,.{d}f}"
        sym = symbol(currency)
        if big.startswith("-"):
            return f"-{sym}{big[1:]}"
        return f"{sign}{sym}{big}" if sym != currency else f"{sign}{big} {currency}"
    d = decimals if decimals is not None else 2 if abs(v) < 100 else 0
    return f"{sign}{v:,.{d}f} {currency}"


def pct(v: Any, decimals: int = 1, signed: bool = False) -> str:
    """A share as a percentage ('12.3%')."""
    if _missing(v):
        return "–"
    return f"{'+' if signed and v > 0 else ''}{100 * v:.{decimals}f}%"


def date(v: Any) -> str:
    """A date: '1998-06-30' (en), '1998年6月30日' (zh)."""
    if _missing(v):
        return "–"
    d = pd.Timestamp(v)
    if current() == "zh":
        return f"{d.year}年{d.month}月{d.day}日"
    return d.strftime("%Y-%m-%d")


def month(v: Any) -> str:
    """A month: '1997-03' (en), '1997年3月' (zh)."""
    if _missing(v):
        return "–"
    d = pd.Timestamp(v)
    return f"{d.year}年{d.month}月" if current() == "zh" else d.strftime("%Y-%m")


