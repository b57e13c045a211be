"""The study: every section together, its cross-checks, command-line overrides and loading with precise
messages."""
from __future__ import annotations

import copy
import difflib
import typing
import zoneinfo
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cvlib.errors import ParamError
from cvlib.examples import agency_cache
from cvlib.expr import ExpressionError, check_names, parse
from cvlib.params.actions import CampaignParams, Drivers, Journey, Monitoring, Report, Strategy
from cvlib.params.base import DATA_DIR, EXAMPLE_PREFIX, MAX_PARAMS_BYTES, _Model, empty_values, safe_yaml, short_repr
from cvlib.params.data import ATTRIBUTE_TABLES, Cleaning, Inputs, Privacy, TableInput
from cvlib.params.segments import Clv, Rfm
from cvlib.params.value import Value
from cvlib.rules import RULE_COLUMNS, TEXT_RULE_COLUMNS, rule_categories


class Study(_Model):
    study: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$",
                       description="short plain name (letters, digits, _ . -; not starting with '.'), "
                                   "used for the report folder")
    client: str = Field(description="client name shown in the reports")
    currency: str = Field("USD", description="currency code shown with every amount (e.g. USD, CNY, EUR)")
    industry: str | None = Field(None, description="the client's industry (e.g. retail, media), a tag of the study's "
                                                   "standard metrics (metrics.json) for peer groups")
    market_segment: str | None = Field(None, description="the client's market segment (e.g. B2B, luxury), a "
                                                         "second tag of metrics.json")
    timezone: str | None = Field(
        None, description="the client's time zone (IANA name, e.g. Europe/Paris, Asia/Shanghai): a timestamp that "
                          "carries a zone or an offset counts on the client's local day; None: UTC")
    occasion: Literal["auto", "order", "day", "week", "month"] = Field(
        "auto", description="what one purchase occasion is, for every stage (the CLV models' x, RFM frequency, the "
                            "journey's cycles): an order (order id), a day, a week (from Monday) or a calendar month "
                            "(monthly billing of service lines invoiced on different days); auto: order when an "
                            "order id is mapped, else day. A week's or a month's occasion is dated by its first "
                            "purchase day; the journey measures cycles between the days orders were placed")
    inputs: Inputs
    privacy: Privacy = Field(default_factory=Privacy)
    report: Report = Field(default_factory=Report)
    cleaning: Cleaning = Field(default_factory=Cleaning)
    rfm: Rfm = Field(default_factory=Rfm)
    clv: Clv = Field(default_factory=Clv)
    value: Value = Field(default_factory=Value)
    drivers: Drivers = Field(default_factory=Drivers)
    journey: Journey = Field(default_factory=Journey)
    strategy: Strategy = Field(default_factory=Strategy)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    campaign: CampaignParams = Field(default_factory=CampaignParams)

    # where the YAML file was; input paths are relative to it
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                zoneinfo.ZoneInfo(v)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Europe/Paris or "
                                 "Asia/Shanghai") from None
        return v

    @model_validator(mode="before")
    @classmethod
    def _filled_and_one_occasion(cls, data: Any) -> Any:
        """Every value the study needs has one (an empty margin, budget, action cost or KPI target is refused, all
        of them named at once, never taken from a default); earlier files set the occasion twice
        (`rfm.frequency`, `journey.cycles.occasion`): read as `occasion` when they agree, refused otherwise."""
        if not isinstance(data, dict):
            return data
        empty = empty_values(cls, data)
        if empty:
            raise ValueError("the study needs values that are empty in the file; fill them in (each with what it "
                             "means):\n  - " + "\n  - ".join(empty))
        return one_occasion(data)

    @model_validator(mode="after")
    def _cross_checks(self) -> "Study":
        """Checks that span sections: everything that does not need the data is refused before a run."""
        if self.occasion == "order" and not self.inputs.transactions.columns.order_id:
            raise ValueError("occasion is 'order' but inputs.transactions.columns.order_id is not mapped; "
                             "map the order id column or use occasion: day")
        if self.cleaning.engine == "source" and self.inputs.transactions.engine == "pandas":
            raise ValueError("cleaning.engine is 'source' (the rules run by the engine the transactions are read by) "
                             "but inputs.transactions is a file read by pandas: use cleaning.engine: duckdb, or "
                             "read the transactions with an engine (engine: duckdb, postgres or spark)")

        categories = rule_categories(self)
        for i, g in enumerate(self.strategy.groups):
            rule = parse(g.when)
            try:
                check_names(rule, RULE_COLUMNS)
            except ExpressionError as exc:
                raise ValueError(f"strategy.groups.{i}.when (group {g.name!r}): {exc}") from None
            text = sorted(rule.arithmetic_names & (set(categories) | set(TEXT_RULE_COLUMNS)))
            if text:
                raise ValueError(f"strategy.groups.{i}.when (group {g.name!r}) does arithmetic on {', '.join(text)}, "
                                 "which hold text or dates: compare them instead (==, !=, in [...])")
            for col, value in rule.literals():
                allowed = categories.get(col)
                if allowed is not None and value not in allowed:
                    raise ValueError(f"strategy.groups.{i}.when (group {g.name!r}) tests {col} == {value!r}, but "
                                     f"no customer can have that {col}: the names are {sorted(allowed)}")
        return self

    def resolve(self, path: str) -> Path:
        """Absolute path of an input file (relative paths are relative to the params file)."""
        if path.startswith(EXAMPLE_PREFIX):
            rest = path[len(EXAMPLE_PREFIX):]
            if rest.startswith("agency/"):  # generated on first use (deterministic)

                return agency_cache() / rest[len("agency/"):]
            return DATA_DIR / rest
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def input_tables(self) -> dict[str, TableInput]:
        tables = {"transactions": self.inputs.transactions}
        for name in ATTRIBUTE_TABLES:
            t = getattr(self.inputs, name)
            if t is not None:
                tables[name] = t
        return tables

    def resolved(self) -> dict[str, Any]:
        """The study as plain data with every file path absolute (dates as ISO text): what a run used,
        re-runnable from any folder."""
        data = self.model_dump(mode="json")
        for name in self.input_tables():
            table = data["inputs"][name]
            if table["path"] is not None and not table["path"].startswith(EXAMPLE_PREFIX):
                table["path"] = str(self.resolve(table["path"]))
            if (table.get("connection") or {}).get("secrets_file"):
                table["connection"]["secrets_file"] = str(self.resolve(table["connection"]["secrets_file"]))
        if data["privacy"].get("key_file"):
            data["privacy"]["key_file"] = str(self.resolve(data["privacy"]["key_file"]))
        return data

    def to_yaml(self, resolved: bool = False) -> str:
        data = self.resolved() if resolved else self.model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[str, Any]:
    """'cleaning.outliers.method=iqr' -> ('cleaning.outliers.method', 'iqr'), value typed by YAML."""
    if "=" not in text:
        raise ParamError(f"--set {text!r}: expected KEY=VALUE, e.g. --set cleaning.outliers.method=iqr")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ParamError(f"--set {text!r}: the key is empty")
    try:
        parsed = safe_yaml(value) if value.strip() else None
    except yaml.YAMLError as exc:
        if "aliases" in str(exc):
            raise ParamError(f"--set {key}: {exc}") from None
        parsed = value  # kept as text: validation then says what the key allows
    return key, parsed


def apply_overrides(data: dict, overrides: dict[str, Any] | list[str] | None) -> dict:
    """Set dotted keys in a nested dict (a copy); lists of 'k=v' strings are parsed first."""
    if not overrides:
        return data
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)

    out = copy.deepcopy(data)
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.get(part) if isinstance(node, dict) else None
            if nxt is None:
                nxt = {}
                node[part] = nxt
            if not isinstance(nxt, dict):
                raise ParamError(f"--set {key}: {part!r} is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return out


#: the earlier spellings of `occasion` (section path, value -> occasion)
OLD_OCCASION = {("rfm", "frequency"): {"auto": "auto", "orders": "order", "days": "day"},
                ("journey", "cycles", "occasion"): {"day": "day", "week": "week", "month": "month"}}


def _pop_old(data: dict, path: tuple[str, ...]) -> Any:
    """Remove and return data[path...] (None when absent); the emptied sections stay."""
    node = data
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node.pop(path[-1], None) if isinstance(node, dict) else None


def one_occasion(data: dict) -> dict:
    """`occasion` from the study's own line or from the earlier two; refused where they say different things.
    The journey counts an order on its day, so `frequency: orders` (or auto) goes with `cycles.occasion: day`."""
    data = copy.deepcopy(data)
    said: dict[str, str] = {}
    wrote: dict[str, Any] = {}
    for path, values in OLD_OCCASION.items():
        v = _pop_old(data, path)
        if v is not None:
            if v not in values:
                raise ValueError(f"{'.'.join(path)} must be one of {', '.join(values)} (it is now `occasion`)")
            said[".".join(path)], wrote[".".join(path)] = values[v], v
    if not said:
        return data
    f, c = said.get("rfm.frequency"), said.get("journey.cycles.occasion")
    own = data.get("occasion") or (f if c in (None, "day") and f is not None else c)

    def agrees(path: str, v: str) -> bool:
        return v == own or (path.startswith("journey") and v == "day" and own in ("auto", "order"))

    if not all(agrees(k, v) for k, v in said.items()):
        lines = ", ".join(f"{k}: {v}" for k, v in wrote.items())
        mine = f" and occasion: {data['occasion']}" if data.get("occasion") else ""
        raise ValueError(f"a purchase occasion is defined once per study, but {lines}{mine} count a client's "
                         "purchases differently; write one line `occasion: day|week|month|order` at the top level "
                         "and remove rfm.frequency and journey.cycles.occasion")
    data["occasion"] = own
    return data


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the model found by walking `loc` (for 'did you mean')."""

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return list(current.model_fields)
        ann = field.annotation
        candidates = [ann, *typing.get_args(ann)]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [n for n, f in current.model_fields.items() if not f.exclude]
    return None


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    """One readable line per problem: key, what is wrong, what is allowed."""
    lines = [f"Invalid study parameters in {source}:"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        # pydantic adds the union member's class name to loc; drop those
        loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1]) or []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            lines.append(f"  - {key}: unknown key.{hint} Allowed here: {', '.join(valid)}.")
        elif e["type"] == "missing":
            lines.append(f"  - {key}: required but missing.")
        else:
            allowed = ""
            ctx = e.get("ctx") or {}
            if "expected" in ctx:
                allowed = f" Allowed: {ctx['expected']}."
            msg = e["msg"].removeprefix("Value error, ")
            got = short_repr(e.get("input"))  # bounded: the value may be huge
            got = f" (got {got})" if not isinstance(e.get("input"), dict) else ""
            lines.append(f"  - {key}: {msg}{got}.{allowed}" if key else f"  - {msg}.")
    return "\n".join(lines)


def load_study(path: str | Path, overrides: dict[str, Any] | list[str] | None = None,
               check_files: bool = True) -> Study:
    """Read, override and validate a study YAML file; check that the input files exist."""
    path = Path(path)
    if "\x00" in str(path):
        raise ParamError(f"Study parameters file name holds a NUL character: {short_repr(str(path))}")
    if not path.is_file():
        raise ParamError(f"Study parameters file not found: {path}. For a new client, write one from the data "
                         "file: cvlib init CLIENT DATA_FILE")
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ParamError(f"{path} has {path.stat().st_size:,} bytes; a parameter file has at most "
                         f"{MAX_PARAMS_BYTES:,}. Is it the right file?")
    try:
        data = safe_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ParamError(f"{path} is not UTF-8 text (byte {exc.start}): save the parameter file as UTF-8.") from None
    except yaml.YAMLError as exc:
        text = str(exc)
        raise ParamError(f"{path} is not valid YAML: {text[:400] + ('...' if len(text) > 400 else '')}") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path}: expected a mapping of keys (study, client, inputs, ...) at the top level")
    data = apply_overrides(data, overrides)
    data.pop("base_dir", None)
    try:
        study = Study.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as err:
        src = f"{path}" + (" (with --set overrides)" if overrides else "")
        raise ParamError(format_validation_error(err, src, Study)) from None
    if check_files:
        for name, table in study.input_tables().items():
            if table.path is None:
                continue  # a table or query: checked when the engine reads it
            if "\x00" in table.path:
                raise ParamError(f"Invalid study parameters in {path}:\n  - inputs.{name}.path holds a NUL character: "
                                 f"{short_repr(table.path)}")
            resolved = study.resolve(table.path)
            if not resolved.is_file() and not (table.engine != "pandas" and _lake_exists(resolved)):
                raise ParamError(
                    f"Invalid study parameters in {path}:\n  - inputs.{name}.path: file not found: {resolved}. "
                    "Paths are relative to the params file; example data is 'example://CDNOW_master.txt'."
                )
    return study


def _lake_exists(path: Path) -> bool:
    """True when a Parquet lake (a folder, or a glob) names at least one file."""
    return path.is_dir() or any(path.parent.glob(path.name))
