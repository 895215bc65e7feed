"""The daily Telegram digest (issue 13): ``TRADEBOT_DIGEST_HOUR``.

The first ``run-cycle`` at or after that hour (the machine's local time zone) sends one message about
yesterday (the local calendar day before): its completed trades, their realized P&L, the unrealized P&L and
equity now, the model's spend yesterday and this month, and the scorecard's verdict over the last 30 days.
Once a day: the run that claims the day in the database sends it (``bot_state``, one atomic statement, so
overlapping runs cannot both send); a failed send gives the claim back for the next run. A crash between the
claim and the send loses that day's digest rather than ever sending it twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING

from tradebot.errors import NotifierError, StorageError, TradebotError

if TYPE_CHECKING:
    from tradebot.config import Settings
    from tradebot.cycle import Notifier
    from tradebot.store.db import Connection

log = logging.getLogger(__name__)
MAX_TRADES_LISTED = 10


def send_digest(conn: Connection, settings: Settings, notifier: Notifier, now: datetime, *, equity: Decimal | None,
                prices: dict[str, Decimal]) -> bool:
    """Send the digest if it is due and nobody sent it today; True when this run sent it. Never raises."""
    from tradebot.store.state import claim_day, unclaim_day

    if settings.digest_hour is None:
        return False
    local = now.astimezone()
    if local.hour < settings.digest_hour:
        return False
    day = local.date().isoformat()
    try:
        if not claim_day(conn, "digest", day):
            return False
        try:
            notifier.send(digest_text(conn, settings, now, equity=equity, prices=prices))
            return True
        except (NotifierError, StorageError) as e:
            log.warning("daily digest not sent (%s); the next run tries again", e)
            unclaim_day(conn, "digest", day)
    except StorageError as e:
        log.warning("daily digest not sent (%s)", e.reason)
    return False


def digest_text(conn: Connection, settings: Settings, now: datetime, *, equity: Decimal | None,
                prices: dict[str, Decimal]) -> str:
    """The digest's HTML text (see the module docstring)."""
    from tradebot import pnl
    from tradebot.app.advisors import window_pnl
    from tradebot.store.decisions import llm_spend, spend_between
    from tradebot.store.trades import TradeFilter, list_trades

    local = now.astimezone()
    end = datetime.combine(local.date(), time(0), tzinfo=local.tzinfo).astimezone(UTC)
    start = datetime.combine(local.date() - timedelta(days=1), time(0), tzinfo=local.tzinfo).astimezone(UTC)
    mode = settings.mode
    trades = list(reversed(list_trades(conn, TradeFilter(mode=mode, status="completed", since=start, until=end,
                                                         limit=10_000))))
    realized = Decimal(0)
    unrealized = Decimal(0)
    for market in settings.markets:
        m = str(market)
        price = prices.get(m)
        acc, last = pnl.whole_history(conn, m, mode)
        mark = price or last
        if mark is not None:
            unrealized += acc.report(m, mode, price=mark, price_source="").unrealized_pnl or Decimal(0)
            window = window_pnl(conn, m, mode, start, end, mark)
            realized += window.realized_pnl if window else Decimal(0)
    spent = spend_between(conn, start, end)
    month = llm_spend(conn, now)[1]
    usd_krw = settings.usd_krw
    lines = [f"📊 <b>tradebot daily digest</b> ({mode}) — {start.astimezone(local.tzinfo):%Y-%m-%d}"]
    buys = sum(1 for t in trades if t.side == "buy")
    lines.append(f"Trades: {len(trades)} ({buys} buys, {len(trades) - buys} sells)")
    for t in trades[:MAX_TRADES_LISTED]:
        lines.append(f"• {escape(t.symbol)} {t.side} {t.total or 0:,.0f} KRW at {t.price or 0:,.0f}")
    if len(trades) > MAX_TRADES_LISTED:
        lines.append(f"• … and {len(trades) - MAX_TRADES_LISTED} more (tradebot trades list)")
    lines.append(f"Realized P&amp;L: {realized:+,.0f} KRW · unrealized now: {unrealized:+,.0f} KRW"
                 + (f" · equity: {equity:,.0f} KRW" if equity is not None else ""))
    lines.append(f"Model: {spent:,.2f} USD ({spent * usd_krw:,.0f} KRW) yesterday, {month:,.2f} USD this month")
    lines.append(escape(_verdict(settings, now), quote=False))
    return "\n".join(lines)


def _verdict(settings: Settings, now: datetime) -> str:
    from tradebot.app.advisors import advisors_report

    try:
        card = advisors_report(settings, mode=None, since=now - timedelta(days=30), until=None, market=None)
    except TradebotError as e:
        return f"Scorecard: not available ({e})"
    if not card.verdicts:
        return "Scorecard (30 days): no verdict yet — " + (card.empty or "not enough scored decisions")
    small = " (too small a sample to mean anything yet)" if any(card.verdicts[0].split(":")[0] in w
                                                               for w in card.warnings) else ""
    return f"Scorecard (30 days): {card.verdicts[0]}{small}"
