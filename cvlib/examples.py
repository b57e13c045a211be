"""Example data: a synthetic advertising agency's client book with known answers.

`agency_book(seed)` returns client-style tables; `write_agency(dir)` writes them as CSV files.

Planted effects (what the drivers stage must find):
- Churn: each yearly contract renewal is refused with probability
  sigmoid(-1.7 - 1.4 (responsiveness - 3.5) + 0.55 complaints_in_the_year - 0.3 (price_fairness - 3.5)).
  Responsiveness and complaints drive churn; price fairness a little; nothing else.
- NPS (0-10): 6.6 + 1.5 (creative_quality - 3.5) + 1.3 (strategic_insight - 3.5)
  + 0.3 (reporting_transparency - 3.5) + noise. Creative quality and strategic insight drive NPS.
- Complaints per year ~ Poisson(exp(-0.6 - 0.9 (responsiveness - 3.5))).
- Ratings (1-5) in the yearly survey are the client's latent level plus noise.

Planted journey patterns (what the journey stage must find; drawn from a second seeded stream):
- Cross-sell: a client buying media buying adds analytics 6-18 months after it starts with probability 0.75
  (other clients: 0.08), so the rule 'media buying -> analytics' has a lift well above 1.
- Acquisition channel by size: pitches win large clients (high CLV, high acquisition cost), referrals small and
  mid ones (cheap): pitch has the highest mean CLV, referral the highest CLV/CAC.
- Billing channel (`channel` in billings.csv): each client orders through the account team, the client portal
  or a tender; large clients use a second channel for 30% of their work (multi-channel clients are worth more);
  from 2022 a third of the account-team-only clients move to the client portal (migration one way).

Planted churn reasons (`churn_reason` in clients.csv, for clients whose retainer ended; drawn from a third
seeded stream): 'slow responses' for most clients who left with poor responsiveness (latent below 3.2) or two or
more complaints in their last year, 'price' for most of the rest with a poor price-fairness rating, else 'budget
cut', 'moved in-house' or 'lost a pitch'; recorded as free text by account managers (case and spacing vary) and
left empty for about one in ten.

Planted campaign (campaigns.csv; a fourth seeded stream): on 2024-04-01 the clients billed in the 90 days before,
whose retainer runs through the next 90 days, are split at random into treatment and control for the 'workshop offer
2024'; within 90 days a treated client
books a one-off strategy workshop (12,000 EUR x size) with probability 0.60, a control client with 0.05, so the
planted revenue uplift is 0.55 x 12,000 x size per treated client (about 6,800 EUR). The file also holds two rows
that cannot be used (a 'holdout' group, an unreadable date), which the stage sets aside and counts.

Realistic mess in billings.csv: exact duplicate rows, credit notes (negative amounts whose invoice id is
'CN-' + the original invoice), missing client ids, amounts with '$' and thousands separators, and about
one row in ten dated day-first (dd/mm/yyyy) by a second billing system.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

EXAMPLE_VERSION = 5  # raised whenever the generated data change, so a cached older copy is not used
SERVICE_LINES = {"creative": 6000.0, "media buying": 14000.0, "digital": 5000.0, "PR": 3500.0}
CROSS_SELL = ("media buying", "analytics", 4000.0)  # (bought first, added later, monthly fee)
BILLING_CHANNELS = ["account team", "client portal", "tender"]
CHANNEL_BY_SIZE = {  # shares of CHANNELS (referral, pitch, inbound, network) by client size
   "small": [0.45, 0.05, 0.40, 0.10], "mid": [0.30, 0.25, 0.30, 0.15], "large": [0.10, 0.60, 0.10, 0.20]}
INDUSTRIES = ["FMCG", "Automotive", "Finance", "Retail", "Technology", "Healthcare", "Travel"]
REGIONS = ["North", "South", "East", "West"]
SIZES = {"small": 0.5, "mid": 1.0, "large": 2.6}
CHANNELS = {"referral": 2500.0, "pitch": 16000.0, "inbound": 4500.0, "network": 8000.0}
RATINGS = ["creative_quality", "responsiveness", "media_value", "strategic_insight", "reporting_transparency",
           "price_fairness"]


def _sigmoid(z: np.ndarray | float) -> np.ndarray | float:
    return 1 / (1 + np.exp(-z))


def _client_years(rng, rng2, cid: str, m0: int, months_total: int, month_starts: np.ndarray, lines: list[str],
                  scale: float, latent: dict[str, float], channels: tuple, cross: tuple, invoice: int,
                  bills: list, survey: list) -> tuple[int | None, int, int]:
    """One client's contract years from month m0: complaints, the survey, the billings by service line (and the
    cross-sold line from its month), then the renewal decision. Appends to `bills` and `survey`; returns the month
    it churned (None: still a client), the last year's complaints and the last invoice number. The draws are made
    in the book's fixed order (the generated files are reproducible)."""
    home, second, moves_at = channels
    added_at, later, fee = cross
    m, comp = m0, 0
    while m < months_total:
        comp = rng.poisson(np.exp(-0.6 - 0.9 * (latent["responsiveness"] - 3.5)))
        ks = np.arange(m, min(m + 12, months_total))

        def via(k: int) -> str:
            if k >= moves_at:
                return "client portal"
            return second if second is not None and rng2.random() < 0.3 else home
        for ln in lines:
            amounts = SERVICE_LINES[ln] * scale * rng.lognormal(0, 0.35, len(ks))
            days = month_starts[ks] + rng.integers(0, 27, len(ks)).astype("timedelta64[D]")
            for k, d, a in zip(ks, days, amounts):
                invoice += 1
                bills.append((cid, d, f"INV{invoice}", ln, round(float(a), 2), via(k)))
        extra = ks[ks >= added_at]
        amounts = fee * scale * rng2.lognormal(0, 0.35, len(extra))
        days = month_starts[extra] + rng2.integers(0, 27, len(extra)).astype("timedelta64[D]")
        for k, d, a in zip(extra, days, amounts):
            invoice += 1
            bills.append((cid, d, f"INV{invoice}", later, round(float(a), 2), via(k)))
        if rng.random() < 0.75 and m + 6 < months_total:
            survey.append(_survey_answer(rng, cid, month_starts[m + 6], latent, int(comp)))
        m += 12
        if m >= months_total:
            break
        p_churn = _sigmoid(-1.7 - 1.4 * (latent["responsiveness"] - 3.5) + 0.55 * comp
                           - 0.3 * (latent["price_fairness"] - 3.5))
        if rng.random() < p_churn:
            return m, comp, invoice
    return None, comp, invoice


def _survey_answer(rng, cid: str, when, latent: dict[str, float], complaints: int) -> dict:
    """One yearly survey answer: ratings around the client's latent ones, NPS and CSAT from them."""
    ratings = {r: int(np.clip(round(latent[r] + rng.normal(0, 0.45)), 1, 5)) for r in RATINGS}
    nps = 6.6 + 1.5 * (latent["creative_quality"] - 3.5) + 1.3 * (latent["strategic_insight"] - 3.5) \
        + 0.3 * (latent["reporting_transparency"] - 3.5) + rng.normal(0, 0.9)
    csat = np.clip(round(1 + 0.8 * np.mean([ratings[r] for r in RATINGS]) + rng.normal(0, 0.4)), 1, 5)
    return {"client_id": cid, "survey_date": str(when)[:10], "nps": int(np.clip(round(nps), 0, 10)),
            "csat": int(csat), **ratings, "complaints": complaints}


def agency_book(n_clients: int = 2000, years: int = 5, seed: int = 7,
                start: str = "2020-01-01") -> dict[str, pd.DataFrame]:
    """Clients, monthly billings by service line, and a yearly satisfaction survey (seeded)."""
    rng = np.random.default_rng(seed)
    rng2 = np.random.default_rng([seed, 16])  # the journey patterns: the base book's draws stay as they were
    rng3 = np.random.default_rng([seed, 17])  # the churn reasons: likewise
    t0 = pd.Timestamp(start)
    end = t0 + pd.DateOffset(years=years) - pd.Timedelta(days=1)
    months_total = 12 * years
    ids = [f"AG{i:05d}" for i in range(1, n_clients + 1)]
    size = rng.choice(list(SIZES), n_clients, p=[0.5, 0.35, 0.15])
    channel = np.array([rng2.choice(list(CHANNELS), p=CHANNEL_BY_SIZE[sz]) for sz in size])
    start_month = np.minimum((rng.beta(1.0, 1.6, n_clients) * months_total).astype(int), months_total - 1)
    month_starts = pd.date_range(t0, periods=months_total + 1, freq="MS").to_numpy()
    latent = {r: np.clip(rng.normal(3.5, 0.75, n_clients), 1, 5) for r in RATINGS}

    clients, bills, survey = [], [], []
    invoice = 100000
    for i, cid in enumerate(ids):
        lines = [ln for ln in SERVICE_LINES if rng.random() < {"small": 0.45, "mid": 0.6, "large": 0.8}[size[i]]] or [
            rng.choice(list(SERVICE_LINES))]
        m0 = int(start_month[i])
        # the planted cross-sell: analytics added some months after the start, mostly by media-buying clients
        first, later, fee = CROSS_SELL
        adds = rng2.random() < (0.75 if first in lines else 0.08)
        added_at = m0 + int(rng2.integers(6, 19)) if adds else months_total
        home = rng2.choice(BILLING_CHANNELS, p=[0.6, 0.25, 0.15])
        second = rng2.choice([c for c in BILLING_CHANNELS if c != home]) \
            if rng2.random() < {"small": 0.12, "mid": 0.35, "large": 0.7}[size[i]] else None
        moves_at = int(rng2.integers(24, 36)) if home == "account team" and second is None and rng2.random() < 1 / 3 \
            else months_total  # 2022: the client portal takes over
        churn_month, comp, invoice = _client_years(
            rng, rng2, cid, m0, months_total, month_starts, lines, SIZES[size[i]], {r: latent[r][i] for r in latent},
            (home, second, moves_at), (added_at, later, fee), invoice, bills, survey)
        contract_start = pd.Timestamp(month_starts[m0])
        contract_end = pd.Timestamp(month_starts[churn_month]) - pd.Timedelta(days=1) if churn_month else None
        reason = _churn_reason(rng3, latent["responsiveness"][i], comp, latent["price_fairness"][i]) \
            if churn_month else ""
        clients.append({"client_id": cid, "industry": rng.choice(INDUSTRIES), "region": rng.choice(REGIONS),
                        "size_tier": size[i], "acquisition_channel": channel[i],
                        "acquisition_cost": round(CHANNELS[channel[i]] * rng.lognormal(0, 0.2), 2),
                        "contract_start": contract_start.date().isoformat(),
                        "contract_end": contract_end.date().isoformat() if contract_end is not None else "",
                        "service_lines": len(lines), "churn_reason": reason})
    billings = pd.DataFrame(bills, columns=["client_id", "date", "invoice_id", "service_line", "amount",
                                           "channel"])
    billings["date"] = pd.to_datetime(billings["date"])
    billings = billings[billings["date"] <= end].reset_index(drop=True)
    messy = _make_messy(billings, rng)
    ends = pd.DataFrame(clients).set_index("client_id")["contract_end"]
    campaigns, extra = _campaign(billings, dict(zip(ids, size)), ends, np.random.default_rng([seed, 18]))
    return {"clients": pd.DataFrame(clients), "billings": pd.concat([messy, extra], ignore_index=True),
            "survey": pd.DataFrame(survey), "campaigns": campaigns}


REASON_SPELLINGS = {"slow responses": ["slow responses", "Slow responses", "SLOW RESPONSES", "slow  responses "],
                    "price": ["price", "Price", " price"], "budget cut": ["budget cut", "Budget cut"],
                    "moved in-house": ["moved in-house", "Moved in-house"], "lost a pitch": ["lost a pitch"]}


def _churn_reason(rng: np.random.Generator, responsiveness: float, complaints: int, price_fairness: float) -> str:
    """The reason an account manager wrote down for a client who left (see the module doc), or nothing."""
    if rng.random() < 0.1:
        return ""
    if (responsiveness < 3.2 or complaints >= 2) and rng.random() < 0.8:
        reason = "slow responses"
    elif price_fairness < 3.2 and rng.random() < 0.7:
        reason = "price"
    else:
        reason = str(rng.choice(["budget cut", "moved in-house", "lost a pitch"]))
    return str(rng.choice(REASON_SPELLINGS[reason]))


CAMPAIGN = ("workshop offer 2024", pd.Timestamp("2024-04-01"), 12000.0, 0.60, 0.05)


def _campaign(billings: pd.DataFrame, size: dict[str, str], contract_end: pd.Series,
              rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The planted campaign (see the module doc): the assignments and the workshop billings it brings."""
    name, day, fee, p_treated, p_control = CAMPAIGN
    recent = billings[(billings["date"] >= day - pd.Timedelta(days=90)) & (billings["date"] < day)]
    running = set(contract_end[(contract_end == "") | (contract_end > str((day + pd.Timedelta(days=90)).date()))].index)
    active = np.sort([c for c in recent["client_id"].unique() if c in running])  # retainers running all along
    last_channel = recent.sort_values("date", kind="stable").groupby("client_id")["channel"].last()
    treated = rng.random(len(active)) < 0.5
    books = rng.random(len(active)) < np.where(treated, p_treated, p_control)
    books[:2] = False  # the first two clients stand for the rows that cannot be used (below): not in the campaign
    when = day + pd.to_timedelta(rng.integers(1, 91, len(active)), unit="D")
    amount = fee * np.array([SIZES[size[c]] for c in active]) * rng.lognormal(0, 0.2, len(active))
    extra = pd.DataFrame({"client_id": active[books], "date": when[books].strftime("%Y-%m-%d"),
                          "invoice_id": [f"WS{i:05d}" for i in range(int(books.sum()))],
                          "service_line": "strategy workshop", "amount": [f"{a:.2f}" for a in amount[books]],
                          "channel": last_channel.reindex(active[books]).to_numpy()})
    groups = np.where(treated, rng.choice(["treatment", "Treatment", "TREATMENT"], len(active)), "control")
    camp = pd.DataFrame({"client_id": active, "group": groups, "campaign": name,
                         "campaign_date": day.date().isoformat()})
    odd = pd.DataFrame({"client_id": [active[0], active[1]], "group": ["holdout", "control"], "campaign": name,
                        "campaign_date": [day.date().isoformat(), "31/02/2024"]})
    return pd.concat([camp.iloc[2:], odd], ignore_index=True), extra


def _make_messy(b: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Client-export mess: text dates in two formats, formatted amounts, credit notes, duplicates, missing ids."""
    out = b.copy()
    dayfirst = rng.random(len(out)) < 0.10
    out["date"] = np.where(dayfirst, out["date"].dt.strftime("%d/%m/%Y"), out["date"].dt.strftime("%Y-%m-%d"))
    credit = out.sample(frac=0.02, random_state=int(rng.integers(1 << 30))).copy()
    credit["invoice_id"] = "CN-" + credit["invoice_id"]
    credit["amount"] = -(credit["amount"] * rng.uniform(0.1, 0.6, len(credit))).round(2)
    out = pd.concat([out, credit], ignore_index=True)
    text = out["amount"].map(lambda v: f"{v:.2f}")
    fancy = rng.random(len(out)) < 0.15
    text[fancy] = out.loc[fancy, "amount"].map(lambda v: f"${v:,.2f}" if v >= 0 else f"-${-v:,.2f}")
    out["amount"] = text
    missing = rng.random(len(out)) < 0.003
    out.loc[missing, "client_id"] = ""
    dups = out.sample(frac=0.005, random_state=int(rng.integers(1 << 30)))
    out = pd.concat([out, dups], ignore_index=True)
    return out.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)


def write_agency(directory: str | Path, seed: int = 7, n_clients: int = 2000) -> dict[str, Path]:
    """Write billings.csv, clients.csv and survey.csv (UTF-8) into directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, df in agency_book(n_clients=n_clients, seed=seed).items():
        path = d / f"{name}.csv"
        df.to_csv(path, index=False)
        out[name] = path
    return out


def agency_cache(seed: int = 7) -> Path:
    """Folder holding the generated agency example (made on first use; deterministic)."""

    root = Path(os.environ.get("CVLIB_CACHE", Path.home() / ".cache" / "cvlib")) / f"agency-{seed}-v{EXAMPLE_VERSION}"
    if not (root / "survey.csv").exists():
        write_agency(root, seed)
    return root
