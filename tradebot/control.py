"""Telegram control, the pure part: what an update is, whether it may command the bot, which command it is,
and the HTML replies. No network, no database (:mod:`tradebot.app.telegram` does the talking).

Who may command: only messages in the configured chat (``TELEGRAM_CHAT_ID``); in a group chat, only from the
user ids of ``TELEGRAM_ALLOWED_USER_IDS``. Edited messages, channel posts, forwarded messages, messages from
bots and commands addressed to another bot are ignored — with no reply at all (a reply would tell a stranger
the bot exists). A state-changing command (``/pause``, ``/resume``, ``/exit``) sent more than 5 minutes
before it arrives is not executed, and the owner is told so.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tradebot.models import Market, plain
from tradebot.notify import format_krw

STATE_CHANGING = frozenset({"pause", "resume", "exit"})
COMMAND_MAX_AGE = timedelta(minutes=5)
CONFIRM_WINDOW = timedelta(seconds=60)
REASON_CHARS = 80
HELP = (
    ("status", "mode, pause, positions, KRW, equity, the last cycle"),
    ("pnl", "[day|week|month|all] realized, unrealized, fees, win rate"),
    ("trades", "[N] the last N trades (5, at most 20)"),
    ("decisions", "[N] the last decisions (5, at most 20)"),
    ("budget", "the model's spend today and this month"),
    ("pause", "[MARKET|all] [reason] stop new buys"),
    ("resume", "[MARKET|all] allow new buys again"),
    ("exit", "MARKET|all sell the whole position (asks to confirm)"),
    ("help", "this list"),
)


@dataclass(frozen=True)
class Incoming:
    """The parts of one update that matter (never stored with its text)."""

    update_id: int
    kind: str  # message, callback_query, edited_message, channel_post, ...
    chat_id: int | None = None
    chat_type: str | None = None
    user_id: int | None = None
    user_name: str = ""
    is_bot: bool = False
    forwarded: bool = False
    sent_at: datetime | None = None  # message.date
    text: str = ""
    callback_id: str | None = None
    callback_data: str = ""
    message_id: int | None = None  # a press: the message carrying the keyboard


@dataclass(frozen=True)
class Command:
    name: str  # without the slash, lower case; "" for text that is not a command
    args: tuple[str, ...]


@dataclass(frozen=True)
class Press:
    exit_id: str
    confirm: bool


@dataclass(frozen=True)
class Ignore:
    reason: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_update(update: dict[str, Any]) -> Incoming:
    """An update as :class:`Incoming` (anything malformed is kept as unknown fields, never raised)."""
    uid = int(update["update_id"])
    kind = next((k for k in update if k != "update_id"), "unknown")
    body = update.get(kind)
    if not isinstance(body, dict):
        return Incoming(uid, kind)
    sender = _dict(body.get("from"))
    user_name = str(sender.get("username") or sender.get("first_name") or "")[:64]
    if kind == "callback_query":
        msg = _dict(body.get("message"))
        chat = _dict(msg.get("chat"))
        return Incoming(uid, kind, chat_id=_int(chat.get("id")), chat_type=chat.get("type"),
                        user_id=_int(sender.get("id")), user_name=user_name, is_bot=bool(sender.get("is_bot")),
                        callback_id=str(body.get("id") or "") or None, callback_data=str(body.get("data") or ""),
                        message_id=_int(msg.get("message_id")))
    chat = _dict(body.get("chat"))
    text = body.get("text")
    date = _int(body.get("date"))
    forwarded = any(k in body for k in ("forward_origin", "forward_from", "forward_from_chat", "forward_date",
                                        "forward_sender_name"))
    return Incoming(uid, kind, chat_id=_int(chat.get("id")), chat_type=chat.get("type"), user_id=_int(sender.get("id")),
                    user_name=user_name, is_bot=bool(sender.get("is_bot")), forwarded=forwarded,
                    sent_at=datetime.fromtimestamp(date, UTC) if date else None,
                    text=text if isinstance(text, str) else "",
                    message_id=_int(body.get("message_id")))


def authorize(u: Incoming, owner_chat: int, allowed_users: frozenset[int]) -> Ignore | None:
    """None when ``u`` may command the bot; else why it is ignored."""
    if u.kind not in ("message", "callback_query"):
        return Ignore(u.kind)  # edited messages, channel posts, ...
    if u.chat_id != owner_chat:
        return Ignore("other chat")
    if u.user_id is None:
        return Ignore("no sender")
    if u.is_bot:
        return Ignore("from a bot")
    if u.chat_type in ("group", "supergroup") and u.user_id not in allowed_users:
        return Ignore("user not allowed")
    if u.chat_type == "private" and u.user_id != owner_chat:
        return Ignore("user not allowed")
    if u.chat_type not in ("private", "group", "supergroup"):
        return Ignore(f"chat type {u.chat_type}")
    if u.forwarded:
        return Ignore("forwarded")
    return None


def parse_command(text: str, bot_username: str) -> Command | Ignore:
    """``/name@bot arg …`` → Command; a command for another bot in a group → Ignore; other text →
    ``Command("", ())`` (answered with the one-line hint)."""
    words = text.split()
    if not words or not words[0].startswith("/"):
        return Command("", ())
    name, _, addressed = words[0][1:].partition("@")
    if addressed and addressed.lower() != bot_username.lower().lstrip("@"):
        return Ignore("for another bot")
    return Command(name.lower(), tuple(words[1:]))


def parse_press(data: str) -> Press | None:
    """``exit:<id>:y`` (Confirm) or ``exit:<id>:n`` (Cancel); None for anything else."""
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != "exit" or parts[2] not in ("y", "n") or not parts[1]:
        return None
    return Press(parts[1], parts[2] == "y")


def expired(sent_at: datetime | None, now: datetime) -> bool:
    """A state-changing command sent more than 5 minutes ago (or with no date) is not executed."""
    return sent_at is None or now - sent_at > COMMAND_MAX_AGE


def parse_markets_arg(arg: str | None, traded: tuple[Market, ...]) -> tuple[Market, ...] | str:
    """``MARKET``/``all``/nothing (all) → markets, or an error sentence."""
    if arg is None or arg.lower() == "all":
        return traded
    text = arg.upper()
    if "-" not in text:
        text = "KRW-" + text
    for m in traded:
        if m == text:
            return (m,)
    return f"{arg} is not a traded market (traded: {', '.join(traded)})"


def count_arg(args: tuple[str, ...], default: int = 5, most: int = 20) -> int:
    """``[N]`` of /trades and /decisions: default 5, at least 1, at most 20."""
    if not args:
        return default
    try:
        return max(1, min(int(args[0]), most))
    except ValueError:
        return default


# ------------------------------------------------------------------------------------------------ replies
def e(value: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(value), quote=False)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A monospace table (``<pre>``), columns padded, numbers right-aligned, every cell escaped."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i and _numeric(c) else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "<pre>" + e("\n".join([line(header)] + [line(r) for r in rows])) + "</pre>"


def _numeric(cell: str) -> bool:
    return bool(cell) and cell.lstrip("+-").replace(",", "").replace(".", "", 1).replace("%", "").isdigit()


def help_text() -> str:
    return "<b>tradebot commands</b>\n" + "\n".join(f"/{name} — {e(text)}" for name, text in HELP)


UNKNOWN = "unknown command, try /help"


@dataclass(frozen=True)
class MarketStatus:
    market: Market
    volume: Decimal | None  # None: the account could not be read
    avg_price: Decimal | None
    price: Decimal | None
    paused: bool
    last_at: datetime | None  # the last cycle's decision for this market
    last_outcome: str


@dataclass(frozen=True)
class StatusView:
    mode: str
    paused_all: bool
    markets: tuple[MarketStatus, ...]
    free_krw: Decimal | None
    equity: Decimal | None
    next_run: datetime | None
    account_error: str | None = None


def _hm(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%m-%d %H:%M") if at else "never"


def status_text(v: StatusView) -> str:
    """The /status reply."""
    lines = [f"<b>tradebot</b> [{e(v.mode.upper())}] — " + ("⏸ buys paused (all markets)" if v.paused_all else "running")]
    rows = []
    for m in v.markets:
        if m.volume is None or m.price is None:
            rows.append([m.market, "?", "?", "?", "?"])
            continue
        value = m.volume * m.price
        upnl = (m.price - (m.avg_price or Decimal(0))) * m.volume if m.volume else Decimal(0)
        rows.append([m.market, plain(m.volume), format_krw(m.avg_price or Decimal(0)), format_krw(value),
                     ("+" if upnl > 0 else "") + format_krw(upnl)])
    lines.append(table(["market", "volume", "avg price", "value", "unrealized"], rows))
    if v.account_error:
        lines.append(f"⚠️ account not read: {e(_short(v.account_error, 200))}")
    if v.free_krw is not None:
        lines.append(f"KRW free: {e(format_krw(v.free_krw))}")
    if v.equity is not None:
        lines.append(f"Equity: {e(format_krw(v.equity))} KRW")
    lines.append("<b>Last cycle</b> (UTC)")
    for m in v.markets:
        pause = " ⏸ paused" if m.paused and not v.paused_all else ""
        lines.append(f"{e(m.market)}: {e(_hm(m.last_at))} {e(m.last_outcome)}{pause}")
    if v.next_run is not None:
        lines.append(f"Next cycle: about {e(_hm(v.next_run))} UTC (an hour after the last)")
    return "\n".join(lines)


def pnl_text(period: str, reports: Sequence[Any]) -> str:
    """The /pnl reply from ``tradebot pnl``'s reports (one per market and mode, a PORTFOLIO row)."""
    if not reports:
        return f"No completed trades {'' if period == 'all' else 'in this ' + period} yet."
    rows = []
    for r in reports:
        win = f"{r.win_rate * 100:.0f}%" if r.win_rate is not None else "-"
        unreal = format_krw(r.unrealized_pnl) if r.unrealized_pnl is not None else "-"
        rows.append([r.symbol, format_krw(r.realized_pnl), unreal, format_krw(r.fees), win])
    title = {"day": "today (UTC)", "week": "last 7 days", "month": "last 30 days", "all": "whole history"}[period]
    return f"<b>P&amp;L, {e(title)}</b> (KRW)\n" + table(["market", "realized", "unrealized", "fees", "win"], rows)


def trades_text(trades: Sequence[Any]) -> str:
    """The /trades reply: newest first."""
    if not trades:
        return "No trades recorded yet."
    rows = [[t.created_at.astimezone(UTC).strftime("%m-%d %H:%M"), t.symbol, t.side, t.status,
             plain(t.amount) if t.amount is not None else "-",
             format_krw(t.price) if t.price is not None else "-"] for t in trades]
    return f"<b>Last {len(trades)} trade{'s' if len(trades) != 1 else ''}</b> (UTC)\n" + table(
        ["time", "market", "side", "status", "volume", "price"], rows)


def decisions_text(decisions: Sequence[Any]) -> str:
    """The /decisions reply: newest first, reasons shortened."""
    if not decisions:
        return "No decisions recorded yet."
    lines = [f"<b>Last {len(decisions)} decision{'s' if len(decisions) != 1 else ''}</b> (UTC)"]
    for d in decisions:
        conf = f" {plain(d.confidence)}" if d.confidence is not None else ""
        did = d.action if d.action == d.decision else f"{d.decision} → {d.action}"
        why = d.error or d.reason
        lines.append(f"{e(d.created_at.astimezone(UTC).strftime('%m-%d %H:%M'))} <b>{e(d.market)}</b> "
                     f"{e(d.advisor)}: {e(did)}{e(conf)}" + (f" — {e(_short(why, REASON_CHARS))}" if why else ""))
    return "\n".join(lines)


def budget_text(today: Decimal, month: Decimal, daily: Decimal | None, monthly: Decimal | None, usd_krw: Decimal) -> str:
    """The /budget reply: spend against the caps (USD, and KRW at TRADEBOT_USD_KRW)."""
    def one(label: str, spent: Decimal, cap: Decimal | None) -> str:
        krw = format_krw((spent * usd_krw).quantize(Decimal(1)))
        head = f"{label}: {spent:.2f} USD ({krw} KRW)"
        if cap is None:
            return head + ", no cap"
        left = max(cap - spent, Decimal(0))
        return head + f" of {cap:.2f} USD — {left:.2f} USD left" + (" ⛔ exhausted" if spent >= cap else "")
    return "<b>Model spend</b> (UTC)\n" + e(one("Today", today, daily)) + "\n" + e(one("This month", month, monthly))


@dataclass(frozen=True)
class ExitLine:
    market: Market
    volume: Decimal
    price: Decimal


def exit_prompt(mode: str, lines: Sequence[ExitLine]) -> str:
    """The question an /exit asks before its Confirm / Cancel keyboard."""
    rows = [[x.market, plain(x.volume), format_krw(x.price), format_krw(x.volume * x.price)] for x in lines]
    total = sum((x.volume * x.price for x in lines), Decimal(0))
    return (f"⚠️ <b>Emergency exit</b> [{e(mode.upper())}]: sell at market\n"
            + table(["market", "volume", "price", "value"], rows)
            + f"\nAbout {e(format_krw(total))} KRW. New buys of these markets are paused too.\n"
            f"Confirm within {int(CONFIRM_WINDOW.total_seconds())} seconds.")


def keyboard(exit_id: str) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": "Confirm", "callback_data": f"exit:{exit_id}:y"},
                                 {"text": "Cancel", "callback_data": f"exit:{exit_id}:n"}]]}
