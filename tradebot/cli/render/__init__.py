"""All of the CLI's rendering: records into aligned tables for people, JSON and CSV with exact decimal strings.

This module holds the shared pieces; :mod:`.reports` (trades, P&L), :mod:`.runs` (cycle, doctor, reconcile,
setup) and :mod:`.backtest` (backtest and compare-live) render each command's records. Commands only echo
what these return.

JSON and CSV never carry floats: every Decimal is written with ``format(d, 'f')`` so ``0.00005`` stays
``0.00005`` and a KRW total keeps all its digits. Tables are for people: KRW with thousands separators.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


def exact(value: Any) -> Any:
    """A JSON/CSV-safe value: Decimal → plain string, datetime → ISO 8601, everything else as is."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def record_dict(record: Any) -> dict[str, Any]:
    assert is_dataclass(record)
    return {f.name: exact(getattr(record, f.name)) for f in fields(record)}


def to_json(records: Sequence[Any]) -> str:
    return json.dumps([record_dict(r) for r in records], indent=2, ensure_ascii=False)


def to_csv(records: Sequence[Any], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        d = record_dict(r)
        writer.writerow(["" if d[c] is None else d[c] for c in columns])
    return buf.getvalue()


def krw(value: Decimal | None, places: int = 0) -> str:
    """KRW with thousands separators (``1,234,567``); ``-`` for missing."""
    if value is None:
        return "-"
    return f"{value:,.{places}f}"


def volume(value: Decimal | None) -> str:
    """A coin volume with up to 8 decimals, trailing zeros removed."""
    return volumes((value,))[0]


def volumes(values: Iterable[Decimal | None]) -> list[str]:
    """:func:`volume` of each value: a table's column in one comprehension, without a call per cell."""
    return ["-" if v is None else (f"{v:.8f}".rstrip("0").rstrip(".") or "0") for v in values]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """An aligned plain-text table; ``right[i]`` right-aligns column i (numbers)."""
    right = right or [False] * len(headers)
    if any(len(r) != len(headers) for r in rows):
        raise ValueError("every row needs one cell per header")
    columns = zip(*rows, strict=True) if rows else ([] for _ in headers)
    widths = [max(len(h), *map(len, col)) if rows else len(h) for h, col in zip(headers, columns, strict=True)]
    # One format string for every line: str.format pads in C (``pnl --by day`` prints thousands of rows).
    template = "  ".join(f"{{:{'>' if r else '<'}{w}}}" for w, r in zip(widths, right, strict=True))
    out = [template.format(*headers).rstrip(), template.format(*("-" * w for w in widths)).rstrip()]
    out += [template.format(*r).rstrip() for r in rows]
    return "\n".join(out)
