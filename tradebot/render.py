"""Turning records into text: aligned tables, JSON and CSV with exact decimal strings.

JSON and CSV never carry floats: every Decimal is written with ``format(d, 'f')`` so ``0.00005`` stays
``0.00005`` and a KRW total keeps all its digits. Tables are for people: KRW with thousands separators.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime, timezone
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
    if value is None:
        return "-"
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """An aligned plain-text table; ``right[i]`` right-aligns column i (numbers)."""
    right = right or [False] * len(headers)
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def trades_table(trades: Sequence[Any]) -> str:
    """The ``trades list`` table: times in UTC, KRW with thousands separators, volumes to 8 decimals."""
    headers = ["ID", "TIME (UTC)", "SYMBOL", "SIDE", "MODE", "STATUS", "PRICE", "AMOUNT", "TOTAL KRW", "FEE KRW", "ORDER"]
    rows = []
    for t in trades:
        rows.append([
            str(t.id),
            t.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            t.symbol,
            t.side,
            t.mode,
            t.status + (" (recovered)" if t.recovered else ""),
            krw(t.price, 2 if t.price is not None and t.price < 100 else 0),
            volume(t.amount),
            krw(t.total),
            krw(t.fee, 2),
            (t.trade_id or "-")[:8],
        ])
    right = [True, False, False, False, False, False, True, True, True, True, False]
    return table(headers, rows, right)


def _pct(x: Decimal | None) -> str:
    return "-" if x is None else f"{x * 100:+.2f} %"


def pnl_table(r: Any) -> str:
    """One P&L report as an aligned block."""
    lines = [
        ("market", f"{r.symbol} ({r.mode})"),
        ("trades", f"{r.trades} ({r.buys} buys, {r.sells} sells, {r.round_trips} round trips)"),
        ("position", f"{volume(r.position_volume)} at average cost {krw(r.average_cost)} KRW (cost basis {krw(r.cost_basis)} KRW)"),
        ("price", f"{krw(r.price)} KRW ({r.price_source})"),
        ("realized P&L", f"{krw(r.realized_pnl)} KRW"),
        ("unrealized P&L", f"{krw(r.unrealized_pnl)} KRW"),
        ("total P&L", f"{krw(r.total_pnl)} KRW ({_pct(r.return_on_capital)} on {krw(r.capital)} KRW of capital)"),
        ("fees paid", f"{krw(r.fees, 2)} KRW"),
        ("win rate", "-" if r.win_rate is None else f"{r.win_rate * 100:.1f} %"),
        ("best / worst sell", f"{krw(r.best_trade)} / {krw(r.worst_trade)} KRW"),
        ("max drawdown", f"{krw(r.max_drawdown)} KRW"),
        ("buy and hold", f"{krw(r.buy_hold_pnl)} KRW ({_pct(r.buy_hold_return)})"),
    ]
    if r.unmatched_volume:
        lines.append(("unmatched", f"{volume(r.unmatched_volume)} sold beyond the recorded position (no cost known)"))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines) + "\n"


def period_table(rows: Sequence[Any]) -> str:
    headers = ["PERIOD", "SYMBOL", "MODE", "REALIZED KRW", "FEES KRW", "BUYS", "SELLS", "BOUGHT", "SOLD"]
    body = [[p.period, p.symbol, p.mode, krw(p.realized_pnl), krw(p.fees, 2), str(p.buys), str(p.sells),
             volume(p.bought_volume), volume(p.sold_volume)] for p in rows]
    return table(headers, body, [False, False, False, True, True, True, True, True, True])
