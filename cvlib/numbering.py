"""The numbers of a report's tables and figures (restarted by `report.setup` for each notebook)."""
from __future__ import annotations

_counts = {"table": 0, "figure": 0}


def next_number(kind: str) -> int:
    """The next table or figure number of this report (numbering restarts with `setup`)."""
    _counts[kind] += 1
    return _counts[kind]


def restart() -> None:
    """Number the next table and figure 1."""
    _counts.update(table=0, figure=0)
