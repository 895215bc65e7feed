"""The reporting commands: ``trades list``, ``pnl``, ``markets`` (and, through :mod:`tradebot.app.backtest`, ``backtest``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.app.parts import database_url, market_data

if TYPE_CHECKING:
    from tradebot.config import Settings
    from tradebot.models import LedgerEntry, MarketQuote, Trade


def pnl_reports(settings: Settings, *, symbol: str | None, mode: str | None, since: datetime | None,
                until: datetime | None, at: Any, by: str | None, detail: bool = False) -> tuple[list[Any], list[Any], list[str]]:
    """``tradebot pnl``: (reports, period rows, notes).

    The whole history with no per-sell detail is served from checkpoints (only trades newer than the last
    ``pnl`` are replayed); a window starts from the day snapshot at or before ``since``; ``by="day"`` over
    whole UTC days reads the stored day totals; other periods, windows not starting at 00:00 UTC with a
    period table, and ``detail`` over the whole history replay the ledger from the start.
    When a mode has trades of several markets (and no ``symbol`` is asked for), a ``PORTFOLIO`` row follows
    that mode's markets (:func:`tradebot.pnl.portfolio_report`), and with ``by`` a total row per period.
    Prices: ``at`` if given, else the exchange's last price, else (exchange unreachable) the last fill
    price, said in a note.
    """
    from tradebot import pnl
    from tradebot.errors import ConfigError, ExchangeError
    from tradebot.store.db import open_checked
    from tradebot.store.trades import (
        completed_between,
        day_snapshots,
        day_totals,
        ledger_at,
        ledger_pairs,
        ledgers,
    )

    # `--by day` over whole UTC days is read from the day totals kept with the checkpoints.
    daily = by == "day" and not detail and all(t is None or t == t.replace(hour=0, minute=0, second=0, microsecond=0)
                                               for t in (since, until)) and (since is not None or until is None)

    accs: dict[tuple[str, str], tuple[Any, Any]] = {}
    groups: dict[tuple[str, str], list[Any]] = {}
    windows: dict[tuple[str, str], tuple[pnl.Ledger | None, list[LedgerEntry]]] = {}
    day_rows: list[pnl.PeriodRow] = []
    with open_checked(database_url(settings)) as conn:
        folded: dict[tuple[str, str], tuple[Any, Decimal | None]] = {}

        def up_to_date(sym: str, md: str) -> tuple[Any, Decimal | None]:
            # Brought up to date once per report: every figure below reads the same state (and one
            # transaction per market instead of three).
            if (sym, md) not in folded:
                folded[(sym, md)] = pnl.whole_history(conn, sym, md)
            return folded[(sym, md)]

        pairs = ledger_pairs(conn, symbol, mode)
        # The exchange's prices are asked for now, on a thread, so the request overlaps the reads below.
        prices_of = _prices_in_background(settings.upbit_api_url, sorted({s for s, _ in pairs})) \
            if at is None and pairs else None
        if since is None and until is None and not detail and (not by or daily):
            for sym, md in pairs:
                accs[(sym, md)] = up_to_date(sym, md)
        elif since is not None and (not by or daily):
            # A window starts from the day snapshot at or before `since` (brought up to date with the
            # checkpoint) and replays only the trades from that day on: not the whole history.
            for sym, md in pairs:
                up_to_date(sym, md)
                found = ledger_at(conn, sym, md, since)
                day_start, snap = found if found else (None, None)
                entries = completed_between(conn, sym, md, day_start, until)
                if not entries and (snap is None or snap.get("last_price") is None):
                    continue  # no trade before `until`: nothing to report, as when the whole ledger is replayed
                fallback = entries[-1].price if entries else Decimal(snap["last_price"])  # type: ignore[index]
                windows[(sym, md)] = (pnl.Ledger.from_json(snap) if snap else None, entries)
                accs[(sym, md)] = (None, fallback)
        else:
            groups = ledgers(conn, symbol=symbol, mode=mode, until=until)
            accs = {k: (None, v[-1].price) for k, v in groups.items()}
        if daily:
            first, end = (since.date() if since else date.min), (until.date() if until else date.max)
            for sym, md in sorted(accs):
                whole_acc = up_to_date(sym, md)[0]
                day_rows += [pnl.PeriodRow(day, sym, md, *figures) for day, *figures in day_totals(conn, sym, md, first, end)]
                if whole_acc.day is not None and first <= whole_acc.day.day < end:
                    day_rows.append(whole_acc.day.row(sym, md))
        # Several markets of a mode: a total row, its drawdown over the daily marks and today's prices.
        several = {md: sorted(s for s, m in accs if m == md) for _, md in accs}
        several = {md: syms for md, syms in several.items() if len(syms) > 1 and symbol is None}
        whole = {(s, md): up_to_date(s, md) for md, syms in several.items() for s in syms}
        snaps = {md: day_snapshots(conn, md, syms, since, until) for md, syms in several.items()}
    if at is not None and len({s for s, _ in accs}) > 1:
        raise ConfigError("--at", "needs --symbol when trades of several markets are recorded")
    notes: list[str] = []
    prices: dict[str, tuple[Any, str]] = {}
    reports: list[Any] = []
    rows: list[Any] = day_rows
    # Every market's price in one request; one by one below when that fails, so each says why.
    quoted = prices_of() if prices_of is not None and accs else {}
    for (sym, md), (acc, last_price) in sorted(accs.items()):
        if sym not in prices:
            if at is not None:
                prices[sym] = (at, "--at")
            elif sym in quoted:
                prices[sym] = (quoted[sym], "exchange")
            else:
                try:
                    prices[sym] = (market_data(settings).ticker_price(sym), "exchange")
                except ExchangeError as e:
                    prices[sym] = (last_price, "last fill")
                    notes.append(f"{sym}: the exchange is unreachable ({e}); unrealized P&L uses the last fill price "
                                 f"(pass --at PRICE to choose)")
        price, source = prices[sym]
        if acc is not None:
            reports.append(acc.report(sym, md, price=price, price_source=source))
        elif (sym, md) in windows:
            start, entries = windows[(sym, md)]
            reports.append(pnl.report(sym, md, entries, price=price, price_source=source, since=since, until=until,
                                      detail=detail, start=start))
        else:
            entries = groups[(sym, md)]
            reports.append(pnl.report(sym, md, entries, price=price, price_source=source, since=since, until=until,
                                      detail=detail))
            if by and not daily:
                rows += pnl.periods(sym, md, entries, by, since=since, until=until)
    def value(acc: Any, price: Decimal) -> Decimal:  # whole-history P&L of one market at ``price``
        return acc.realized + acc.ledger.volume * price - acc.ledger.cost  # type: ignore[no-any-return]

    for md, syms in several.items():
        finals = {s: value(whole[(s, md)][0], whole[(s, md)][1] or Decimal(0)) for s in syms}
        now = None
        if until is None and all(prices[s][0] is not None for s in syms):
            now = sum((value(whole[(s, md)][0], prices[s][0]) for s in syms), Decimal(0))
        reports.append(pnl.portfolio_report([r for r in reports if r.mode == md and r.symbol in syms],
                                            pnl.daily_marks(snaps[md], finals, since), now))
    if by and several:
        rows += pnl.portfolio_periods([r for r in rows if r.mode in several])
    return reports, rows, notes


def list_trades(settings: Settings, *, symbol: str | None = None, side: str | None = None, status: str | None = None,
                mode: str | None = None, since: datetime | None = None, until: datetime | None = None,
                limit: int = 20) -> list[Trade]:
    """``tradebot trades list``: recorded trades matching every filter given, newest first (``until``
    exclusive)."""
    from tradebot.store.db import open_checked
    from tradebot.store.trades import TradeFilter
    from tradebot.store.trades import list_trades as select

    f = TradeFilter(symbol=symbol, side=side, status=status, mode=mode, since=since, until=until, limit=limit)
    with open_checked(database_url(settings)) as conn:
        return select(conn, f)


def market_quotes(settings: Settings, *, limit: int) -> list[MarketQuote]:
    """``tradebot markets``: Upbit's KRW markets by KRW traded over the last 24 hours, the most traded first
    (at most ``limit``). Public data: no keys needed."""
    quotes: list[MarketQuote] = market_data(settings).market_quotes()
    quotes.sort(key=lambda q: (-q.traded_value_24h, q.market))
    return quotes[:limit]


def _prices_in_background(api_url: str, symbols: list[str]) -> Callable[[], dict[str, Decimal]]:
    """Start asking Upbit for the last price of every one of ``symbols`` in one request, on a thread; the
    function returned waits for the answer: {} when the exchange failed (the caller then asks market by market)."""
    from tradebot.errors import ExchangeError
    from tradebot.exchange.upbit_quotes import public_prices
    from tradebot.infra.background import in_background
    from tradebot.models import Market

    def ask() -> dict[str, Decimal]:
        try:
            return {str(m): p for m, p in public_prices(api_url, [Market(s) for s in symbols]).items()}
        except ExchangeError:
            return {}

    return in_background(ask, "tradebot-prices")
