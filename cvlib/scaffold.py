"""A new client's params file from its data file (`cvlib init CLIENT DATA_FILE`).

The file is sniffed (format, encoding, delimiter, header row), the column mapping proposed from the columns'
names (English and Chinese) and content, the analysis window and the holdout set from the data's dates and the
currency from the amounts' symbols. Nothing comes from an example: the margin, the budget and every action's cost
are written empty with a comment saying what to fill, and `validate` refuses the study until they have values.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cvlib.errors import InputDataError
from cvlib.params.actions import Strategy
from cvlib.parsing import parse_amounts, parse_dates

ENCODINGS = ("utf-8-sig", "gb18030", "cp1252")  # tried in order: UTF-8 (with or without a BOM), Chinese, Western
DELIMITERS = ",;\t|"
SAMPLE_ROWS = 5_000

#: column names that say what a column holds, normalised (lower case, no spaces, _ or -)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "customer_id": ("customerid", "customer", "customerno", "custid", "clientid", "client", "memberid", "member",
                    "userid", "accountid", "account", "buyerid", "buyer", "客户编号", "客户id", "客户代码", "客户号",
                    "客户", "会员编号", "会员id", "会员号", "用户id", "用户编号", "顾客编号", "顾客id"),
    "date": ("date", "orderdate", "transactiondate", "invoicedate", "purchasedate", "saledate", "datetime",
             "timestamp", "time", "日期", "交易日期", "订单日期", "下单日期", "购买日期", "消费日期", "开票日期",
             "交易时间", "下单时间", "时间"),
    "amount": ("amount", "revenue", "sales", "salesamount", "netamount", "totalamount", "total", "value", "spend",
               "price", "金额", "交易金额", "订单金额", "销售额", "销售金额", "实付金额", "消费金额", "支付金额",
               "总金额", "总额"),
    "order_id": ("orderid", "order", "orderno", "ordernumber", "invoiceid", "invoice", "invoiceno", "transactionid",
                 "receiptid", "订单号", "订单编号", "订单id", "发票号", "发票编号", "交易编号", "交易号", "单号"),
    "product": ("product", "productname", "category", "productcategory", "sku", "item", "line", "serviceline",
                "产品", "产品名称", "产品类别", "商品", "商品名称", "商品类别", "品类", "类别", "类目", "业务线"),
    "channel": ("channel", "saleschannel", "source", "渠道", "销售渠道", "来源"),
    "quantity": ("quantity", "qty", "units", "数量", "件数"),
}
REQUIRED = ("customer_id", "date", "amount")

#: currency of a symbol or unit written with the amounts
SYMBOLS = {"¥": "CNY", "￥": "CNY", "元": "CNY", "RMB": "CNY", "CNY": "CNY", "円": "JPY", "JPY": "JPY", "US$": "USD",
           "HK$": "HKD", "$": "USD", "USD": "USD", "€": "EUR", "EUR": "EUR", "£": "GBP", "GBP": "GBP", "₩": "KRW",
           "₹": "INR", "CHF": "CHF"}


@dataclass
class Sniffed:
    """What a data file is: its format, encoding, delimiter, whether its first row is a header, and a sample of
    its rows as text."""
    path: Path
    format: str
    encoding: str = "utf-8"
    delimiter: str | None = None
    header: bool = True
    sample: pd.DataFrame = field(default_factory=pd.DataFrame)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-./()（）]+", "", str(name)).lower()


def _encoding(raw: bytes) -> str:
    for enc in ENCODINGS:
        try:
            raw.decode(enc)
            return "utf-8-sig" if enc == "utf-8-sig" and raw.startswith(b"\xef\xbb\xbf") else \
                "utf-8" if enc == "utf-8-sig" else enc
        except UnicodeDecodeError as exc:
            if exc.start > len(raw) - 4:  # a character cut at the end of the sample
                return "utf-8" if enc == "utf-8-sig" else enc
    return "latin-1"


def _delimiter(lines: list[str]) -> str | None:
    """The delimiter that splits every line into the same number of fields, the most fields winning (a comma
    inside '12,50 €' does not split a semicolon file evenly)."""
    best, fields = None, 1
    for d in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=d)}
        if len(counts) == 1 and (n := counts.pop()) > fields:
            best, fields = d, n
    return best


def _looks_like_data(values: list[str]) -> bool:
    """Whether a row holds data (a date or a number in it) rather than column names."""
    texts = pd.Series([v for v in values if v.strip()], dtype=object)
    if texts.empty:
        return False
    numbers = parse_amounts(texts).notna()
    dates = parse_dates(texts)[0].notna()
    return bool((numbers | dates).any())


def sniff(path: str | Path) -> Sniffed:
    """Format, encoding, delimiter and header of a data file, and its first rows as text."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: no such file; give the client's data file (CSV, TSV, Excel or Parquet)")
    ext = path.suffix.lower()
    if ext in (".xlsx", ".xlsm", ".xls"):
        df = pd.read_excel(path, dtype=str, nrows=SAMPLE_ROWS)
        return Sniffed(path, "excel", sample=df)
    if ext in (".parquet", ".pq"):
        df = pd.read_parquet(path).head(SAMPLE_ROWS).astype("string")
        return Sniffed(path, "parquet", sample=df)
    raw = path.read_bytes()[:1 << 20]
    encoding = _encoding(raw)
    text = raw.decode(encoding, errors="ignore")
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if not lines:
        raise InputDataError(f"{path}: the file is empty")
    delimiter = _delimiter(lines[:20])
    if delimiter is None:
        raise InputDataError(f"{path}: no delimiter found in the first line ({lines[0][:80]!r}); cvlib reads "
                             "delimited text (comma, semicolon, tab or |), Excel and Parquet files")
    first = next(csv.reader([lines[0]], delimiter=delimiter))
    header = not _looks_like_data(first)
    df = pd.read_csv(path, sep=delimiter, encoding=encoding, dtype=str, nrows=SAMPLE_ROWS, keep_default_na=False,
                     header=0 if header else None, on_bad_lines="skip", engine="python")
    if not header:
        df.columns = [f"column_{i + 1}" for i in range(df.shape[1])]
    fmt = "tsv" if delimiter == "\t" else "csv"
    return Sniffed(path, fmt, encoding, None if delimiter in ",\t" else delimiter, header, df)


def _content_kind(s: pd.Series) -> str:
    """'date', 'amount', 'integer', 'id' or 'text': what most values of a column look like."""
    v = s.dropna().astype(str).str.strip()
    v = v[v != ""]
    if v.empty:
        return "text"
    if parse_dates(v.head(500))[0].notna().mean() >= 0.9 and not v.head(500).str.fullmatch(r"\d{1,6}").all():
        return "date"
    readable = max(parse_amounts(v.head(500), d).notna().mean() for d in (".", ","))
    if readable >= 0.95:
        decimals = v.head(500).str.contains(r"[.,]\d{1,2}\s*\D*$", regex=True).mean()
        return "amount" if decimals >= 0.2 or v.head(500).str.contains(r"[^\d\s]").any() else "integer"
    repeats = 1 - v.nunique() / len(v)
    return "id" if repeats > 0.05 and v.str.len().max() <= 40 else "text"


def propose_mapping(sample: pd.DataFrame) -> tuple[dict[str, str | None], dict[str, str]]:
    """cvlib's column -> the file's column, from names first and content second; and how each was found."""
    cols = list(sample.columns)
    mapping: dict[str, str | None] = {}
    how: dict[str, str] = {}
    for role, names in SYNONYMS.items():
        for col in cols:
            if col not in mapping.values() and _norm(col) in names:
                mapping[role], how[role] = col, "by its name"
                break
    for role in ("product", "channel", "quantity"):  # optional columns: a name that holds one of the words
        if role not in mapping:
            mapping_col = next((c for c in cols if c not in mapping.values()
                                and any(len(n) >= 2 and n in _norm(c) for n in SYNONYMS[role])), None)
            if mapping_col is not None:
                mapping[role], how[role] = mapping_col, "by a word in its name"
    kinds = {c: _content_kind(sample[c]) for c in cols if c not in mapping.values()}
    for role, kind in (("date", "date"), ("amount", "amount")):
        if mapping.get(role) is None:
            found = next((c for c, k in kinds.items() if k == kind and c not in mapping.values()), None)
            if found is not None:
                mapping[role], how[role] = found, f"by its content ({kind}s)"
    if mapping.get("customer_id") is None:  # ids repeat (customers buy again) and are many: the most distinct wins
        ids = [c for c, k in kinds.items() if k in ("id", "integer") and c not in mapping.values()]
        if ids:
            mapping["customer_id"] = max(ids, key=lambda c: sample[c].nunique())
            how["customer_id"] = "by its content (repeated ids)"
    for role in REQUIRED:
        mapping.setdefault(role, None)
    return mapping, how


def currency_of(values: pd.Series) -> str | None:
    """The currency written with the amounts (a symbol, unit or code), if one is."""
    text = " ".join(values.dropna().astype(str).head(2_000))
    found = [code for sym, code in SYMBOLS.items() if sym in text]
    return found[0] if found else None


def decimal_of(values: pd.Series) -> str:
    """',' when the amounts read with a decimal comma (1.234,56 or 12,5) and not with a decimal point."""
    v = values.dropna().astype(str).head(2_000)
    point, comma = parse_amounts(v, ".").notna().mean(), parse_amounts(v, ",").notna().mean()
    has_comma_decimals = v.str.contains(r",\d{1,2}\s*\D*$", regex=True).mean() > 0.5
    return "," if comma > point or (comma == point and has_comma_decimals) else "."


def date_span(sniffed: Sniffed, column: str) -> tuple[dt.date, dt.date] | None:
    """The first and last date in the whole file's date column (None when none reads)."""
    s = sniffed
    if s.format in ("csv", "tsv"):
        sep = s.delimiter or ("\t" if s.format == "tsv" else ",")
        col = pd.read_csv(s.path, sep=sep, encoding=s.encoding, dtype=str, keep_default_na=False,
                          header=0 if s.header else None, usecols=[column if s.header else
                                                                   int(column.split("_")[-1]) - 1],
                          on_bad_lines="skip", engine="python").iloc[:, 0]
    elif s.format == "excel":
        col = pd.read_excel(s.path, dtype=str, usecols=[column]).iloc[:, 0]
    else:
        col = pd.read_parquet(s.path, columns=[column]).iloc[:, 0].astype("string")
    days = parse_dates(col.dropna().drop_duplicates())[0].dropna()
    return (days.min().date(), days.max().date()) if len(days) else None


def _q(value: object) -> str:
    """A value as YAML (strings quoted so that no text is read as a number, a date or a bool)."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else \
        "null" if value is None else str(value)


def study_name(client: str) -> str:
    """A study name (letters, digits, _ . -) from the client's name; 'client' when nothing of it is ASCII."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", client).strip("_.-").lower()[:64]
    return name or "client"


def _window(span: tuple[dt.date, dt.date] | None) -> list[str]:
    if span is None:
        return ["cleaning: {}                     # FILL the window: no date in the date column could be read"]
    first, last = span
    lines = ["cleaning:",
             f"  window: {{enabled: true, start: {first}, end: {last}}}   # CHECK: the data's first and last day",
             "  # duplicates, returns, dates and outliers: the defaults (`cvlib params` lists every rule)", ""]
    if (last - first).days >= 300:  # a holdout worth checking the CLV models on: the last third of the data
        cut = first + dt.timedelta(days=round((last - first).days * 2 / 3))
        lines += ["rfm:", f"  calibration_end: {cut}   # CHECK: the CLV models are fitted up to this day and checked "
                  f"on the {(last - cut).days} days after it", ""]
    return lines


def _columns(sniffed: Sniffed, mapping: dict[str, str | None], how: dict[str, str]) -> list[str]:
    lines = ["    columns:                        # CHECK: proposed from the columns' names and content"]
    for role, col in mapping.items():
        if col is None:
            lines.append(f"      {role}: null   # FILL: which column holds the {role.replace('_', ' ')}?")
        else:
            lines.append(f"      {role}: {_q(col)}   # found {how.get(role, '')}")
    rest = [c for c in sniffed.sample.columns if c not in mapping.values()]
    if rest:
        lines.append(f"      # other columns in the file: {', '.join(map(str, rest))}")
    return lines


def _inputs(sniffed: Sniffed, params_dir: Path, decimal: str) -> list[str]:
    rel = os.path.relpath(sniffed.path.resolve(), params_dir.resolve())
    lines = ["inputs:", "  transactions:", f"    path: {_q(Path(rel).as_posix())}", f"    format: {sniffed.format}"]
    if sniffed.format in ("csv", "tsv"):
        lines.append(f"    encoding: {sniffed.encoding}      # sniffed")
        if sniffed.delimiter:
            lines.append(f"    delimiter: {_q(sniffed.delimiter)}")
        if not sniffed.header:
            lines += ["    header: false                   # the first row holds data",
                      f"    names: [{', '.join(_q(c) for c in sniffed.sample.columns)}]"]
    if decimal != ".":
        lines.append(f"    decimal: {_q(decimal)}                  # amounts are written with a decimal comma")
    return lines


def _actions(currency: str | None) -> list[str]:
    unit = currency or "the study currency"
    lines = ["strategy:", f"  budget: null                      # FILL: the budget for the actions, in {unit}",
             "  actions:                          # the standard library: CHECK names, groups and the assumed uplifts; "
             "FILL every cost"]
    for a in Strategy().actions:
        lines += [f"    - name: {_q(a.name)}", f"      groups: [{', '.join(_q(g) for g in a.groups)}]",
                  f"      applies_to: {a.applies_to}",
                  f"      uplift: {a.uplift:g}                   # assumed: replace with a measured or agreed value",
                  f"      cost_per_customer: null       # FILL: cost per targeted customer, in {unit}",
                  f"      channel: {_q(a.channel)}", f"      priority: {a.priority}"]
    return lines


def template(client: str, study: str, sniffed: Sniffed, params_dir: Path, currency: str | None,
             currency_how: str) -> str:
    """The params file of a new client: what the data say, and empty values (FILL) for what only the client
    knows. Nothing is taken from an example."""
    mapping, how = propose_mapping(sniffed.sample)
    amounts = sniffed.sample[mapping["amount"]] if mapping["amount"] else pd.Series(dtype=str)
    decimal = decimal_of(amounts) if len(amounts) else "."
    span = date_span(sniffed, mapping["date"]) if mapping["date"] else None
    chinese = any(re.search(r"[\u4e00-\u9fff]", str(c)) for c in sniffed.sample.columns) or currency == "CNY"
    lines = [f"# The study of {client}, written by `cvlib init` from {sniffed.path.name} on {dt.date.today()}.",
             "# Read every line marked CHECK and fill every value marked FILL (`cvlib validate` names the ones",
             f"# left), then run it: cvlib run {params_dir.as_posix()}/{study}.yaml",
             f"study: {study}", f"client: {_q(client)}",
             f"currency: {_q(currency)}   # " + (currency_how if currency else "FILL: the currency code of the "
                                                 "amounts (e.g. CNY, USD, EUR)"),
             "occasion: auto                      # a purchase occasion: an order when an order id is mapped, else "
             "a day (week or month for billing data)", ""]
    lines += _inputs(sniffed, params_dir, decimal) + _columns(sniffed, mapping, how) + [""]
    lines += [f"report: {{language: {'zh' if chinese else 'en'}}}   # CHECK: the reports' language (en or zh)", ""]
    lines += _window(span)
    lines += ["clv:", "  margin: null                      # FILL: the client's gross margin as a share of revenue "
              "(e.g. 0.35)", ""]
    lines += _actions(currency) + [""]
    lines += ["monitoring:", "  kpis: []                          # KPIs with the client's targets, e.g. "
              f"- {{kpi: retention_rate, target: 0.4}} (money in {currency or 'the study currency'})", ""]
    return "\n".join(lines)


def init(client: str, data_file: str | Path, params_dir: str | Path = "params", currency: str | None = None,
         study: str | None = None, force: bool = False, ask: bool = False) -> Path:
    """Write params/<study>.yaml for a new client from its data file; returns its path."""
    sniffed = sniff(data_file)
    params_dir = Path(params_dir)
    study = study or study_name(client)
    out = params_dir / f"{study}.yaml"
    if out.exists() and not force:
        raise InputDataError(f"{out} exists: choose another name with --study, or overwrite it with --force")
    mapping, _ = propose_mapping(sniffed.sample)
    found = currency_of(sniffed.sample[mapping["amount"]]) if mapping["amount"] else None
    how = "given" if currency else f"CHECK: read from the amounts' symbols ({found})" if found else ""
    currency = currency or found
    if currency is None and ask:
        currency = input("Currency of the amounts (ISO code, e.g. CNY, USD, EUR): ").strip().upper() or None
        how = "given"
    params_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(template(client, study, sniffed, params_dir, currency, how), encoding="utf-8")
    return out
