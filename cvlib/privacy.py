"""Pseudonymised customer ids: keyed HMAC-SHA256, and one scrubber for every text that leaves a run.

The key comes from an environment variable (``privacy.key_env``) or a key file (``privacy.key_file``); it is
never written into any output, and a study that pseudonymises without a key is refused. Pseudonyms show 64
bits (16 hex digits): at a million customers the chance that two share one is about 3 in 100 million.

`Scrubber.scrub` replaces every customer id wherever it stands in a text (raw lines, error messages, free
text, rendered tables): the runner passes every executed notebook, the index page and its own messages through
it. Ids are found as whole tokens (split on white space, quotes, brackets and the usual field separators), so
an id that is also a plain small number (customer "7") also replaces that number in prose: the safe side. An id
holding a character that HTML escapes (& < > " ') is also found in each of its escaped spellings (&amp;, &lt;,
&#39;, &#x27;, ...), since a report shows it escaped; the pseudonym itself needs no escaping.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd

from cvlib import engines, reading
from cvlib.errors import ParamError
from cvlib.params import ATTRIBUTE_TABLES

if TYPE_CHECKING:
    from cvlib.params import Study

MIN_KEY_LENGTH = 16
PREFIX = "c_"
_TOKEN = re.compile(r"[^\s,;|\"'`()\[\]{}<>=:]+")
_EDGE = ".!?"
_ESCAPES = {"&": ("&", "&amp;", "&#38;", "&#x26;"), "<": ("<", "&lt;", "&#60;", "&#x3c;"),
            ">": (">", "&gt;", "&#62;", "&#x3e;"), '"': ('"', "&quot;", "&#34;", "&#x22;"),
            "'": ("'", "&#39;", "&#x27;", "&apos;")}


def _spellings(i: str) -> str:
    """A pattern matching an id as written and in every HTML-escaped spelling of its special characters."""
    return "".join("(?i:" + "|".join(re.escape(e) for e in _ESCAPES[ch]) + ")" if ch in _ESCAPES else re.escape(ch)
                   for ch in i)


def _core(i: str) -> str:
    """The longest stretch of an id that HTML leaves as it is (a cheap test of whether it can be in a text)."""
    return max(re.split("[&<>\"']", i), key=len)


def load_key(study: "Study") -> bytes:
    """The pseudonymisation key (ParamError when it is missing or too short to be secret)."""
    p = study.privacy
    source, key = "", ""
    if p.key_file:
        path = study.resolve(p.key_file)
        if not path.is_file():
            make = 'python -c "import secrets; print(secrets.token_hex(32))"'
            raise ParamError(f"privacy.key_file: {path} does not exist. Create it with a secret of at least "
                             f"{MIN_KEY_LENGTH} characters (e.g. `{make} > {path}`), and keep it out of the study "
                             "folder you send.")
        try:
            key, source = path.read_bytes().decode("utf-8").strip(), f"key file {path}"
        except UnicodeDecodeError:
            raise ParamError(f"privacy.key_file: {path} is not text (a key is a line of at least {MIN_KEY_LENGTH} "
                             "characters, e.g. 64 hex digits).") from None
        if "\x00" in key:
            raise ParamError(f"privacy.key_file: {path} holds a NUL byte: write the key as one line of text.")
    else:
        key, source = os.environ.get(p.key_env, "").strip(), f"environment variable {p.key_env}"
    if not key:
        raise ParamError(f"privacy.pseudonymize_ids is true but no key was found ({source} is empty). Set "
                         f"{p.key_env} to a secret of at least {MIN_KEY_LENGTH} characters, or name a key file in "
                         "privacy.key_file. A default key would let anyone reverse the pseudonyms.")
    if len(key) < MIN_KEY_LENGTH:
        raise ParamError(f"the pseudonymisation key in {source} has {len(key)} characters; use at least "
                         f"{MIN_KEY_LENGTH} (a random secret, e.g. 64 hex digits).")
    return key.encode("utf-8")


def pseudonym_of(value: str, key: bytes) -> str:
    """'c_' and the first 64 bits of HMAC-SHA256(key, id), in hex."""
    return PREFIX + hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def pseudonyms(ids: pd.Series, key: bytes) -> pd.Series:
    """Each id's pseudonym (computed once per distinct id)."""
    text = ids.astype(str)
    uniques = pd.unique(text.to_numpy())
    table = {u: pseudonym_of(u, key) for u in uniques}
    return text.map(table)


class Scrubber:
    """Replaces known customer ids by their pseudonyms wherever they appear in a text."""

    def __init__(self, ids: Iterable[str], key: bytes) -> None:
        self.key = key
        self.ids = {str(i).strip() for i in ids if i is not None and str(i).strip() and str(i).strip() != "nan"}
        # ids that a token split would cut (they hold a separator) or that HTML escapes are replaced as whole
        # strings, longest first, in every spelling
        self._odd = sorted((i for i in self.ids if _TOKEN.fullmatch(i) is None or any(c in i for c in _ESCAPES)),
                           key=len, reverse=True)
        self._cores = [_core(i) for i in self._odd]
        self._cache: dict[str, str] = {}

    def _sub(self, i: str) -> str:
        p = self._cache.get(i)
        if p is None:
            p = self._cache[i] = pseudonym_of(i, self.key)
        return p

    def _token(self, m: re.Match) -> str:
        t = m.group(0)
        if t in self.ids:
            return self._sub(t)
        core = t.rstrip(_EDGE)
        if core != t and core in self.ids:
            return self._sub(core) + t[len(core):]
        return t

    def scrub(self, text: str) -> str:
        """The text with every id replaced."""
        if not text or not self.ids:
            return text
        here = [i for i, c in zip(self._odd, self._cores) if c in text]  # longest first
        if here:
            pattern = re.compile("|".join(f"(?P<i{k}>{_spellings(i)})" for k, i in enumerate(here)))
            text = pattern.sub(lambda m: self._sub(here[int(m.lastgroup[1:])]), text)
        return _TOKEN.sub(self._token, text)

    def scrub_notebook(self, nb) -> None:
        """Scrub every text output of an executed notebook (in place); images are left as they are."""
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if "text" in out:
                    out["text"] = self.scrub(_joined(out["text"]))
                if "evalue" in out:
                    out["evalue"] = self.scrub(out["evalue"])
                if "traceback" in out:
                    out["traceback"] = [self.scrub(t) for t in out["traceback"]]
                for mime, value in list(out.get("data", {}).items()):
                    if mime.startswith("text/") or mime in {"application/json", "image/svg+xml"}:
                        out["data"][mime] = self.scrub(_joined(value)) if isinstance(value, (str, list)) else value


def _joined(v: str | list[str]) -> str:
    return "".join(v) if isinstance(v, list) else v


def study_ids(study: "Study") -> set[str]:
    """Every customer id in the study's input files, malformed lines included."""

    ids: set[str] = set()
    tx = study.inputs.transactions
    if not tx.is_file:  # the engine lists them: a lake is not loaded to learn its ids
        ids |= engines.distinct_values(study, tx, tx.columns.customer_id, "transactions")
    else:
        raw, bad = reading.read_transactions(study)
        ids.update(raw["customer_id"].astype(str).str.strip().unique())
        if "customer_id" in bad.columns:
            ids.update(bad["customer_id"].astype(str))
    for name in ATTRIBUTE_TABLES:
        spec = getattr(study.inputs, name)
        if spec is not None and not spec.is_file:
            ids |= engines.distinct_values(study, spec, spec.customer_id, name)
        elif spec is not None:
            df, _ = reading.read_raw(study, spec, name)
            if spec.customer_id in df.columns:
                ids.update(df[spec.customer_id].astype(str).str.strip().unique())
    return ids


def params_ids(study: "Study") -> set[str]:
    """Customer ids written in the parameters themselves (test ids): shown in the index's parameter dump and in
    comparisons, so they are pseudonymised too."""
    return {str(i) for i in study.cleaning.test_ids.ids}


def scrubber_for(study: "Study", read_inputs: bool = True) -> Scrubber:
    """The study's scrubber (one that changes nothing when the study does not pseudonymise). Without
    `read_inputs` (the input files may be gone), only the ids in the parameters are known."""
    if not study.privacy.pseudonymize_ids:
        return Scrubber([], b"")
    key = load_key(study)
    ids = params_ids(study)
    if read_inputs:
        ids |= study_ids(study)
    return Scrubber(ids, key)


def key_fingerprint(key: bytes) -> str:
    """A short fingerprint that tells keys apart without revealing them (for run records)."""
    return hashlib.sha256(b"cvlib-key-id:" + key).hexdigest()[:12]
