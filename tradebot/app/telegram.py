"""``tradebot telegram``: take commands from the owner's Telegram chat (:mod:`tradebot.control` says who may
command and renders the replies).

Exactly once: each update is claimed in ``telegram_updates`` in the same transaction as its effect (a pause,
an exit asked or confirmed) and its replies (``telegram_outbox``); the next ``getUpdates`` offset is the
largest claimed ``update_id`` + 1. A poller killed after the commit never runs the command again (the next
one starts past it and sends the queued replies); killed before, it ran nothing and the update comes again.
Replies are sent after the commit, from the outbox, and retried on the next poll when Telegram fails.

``--once`` polls until no update is pending (and, while an exit it asked waits for its Confirm, up to that
minute), then exits; without it the poller long-polls until SIGTERM/SIGINT. One poller per bot and database
(a PostgreSQL session lock: a second exits 75 before touching Telegram); a poller elsewhere makes Telegram
answer 409 Conflict: exit 75 too.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tradebot.app.parts import database_url
from tradebot.errors import ConfigError, LockedError, StorageError, TradebotError
from tradebot.infra.faults import crashpoint

if TYPE_CHECKING:
    from tradebot.config import Settings
    from tradebot.control import Command, Incoming
    from tradebot.store.db import Connection
    from tradebot.store.telegram import ExitRequest, Handled, Outgoing
    from tradebot.telegram_api import BotApi

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 50  # long polling: Telegram holds the request up to this long when nothing is pending
OFFSET_MAX_AGE = timedelta(days=6)  # after a week without updates Telegram may number the next one lower
SEND_PAUSE_S = 30.0
ONCE_MAX_POLLS = 100  # --once: batches of up to 100 updates; the rest waits for the next minute
CRASH_POINT = "telegram_after_commit"  # TRADEBOT_CRASH_AT: an update is handled, nothing sent or acknowledged


@dataclass
class PollReport:
    """What a poller did, for the CLI: one line per update (never its text), replies sent or not."""

    handled: list[Handled] = field(default_factory=list)
    sent: int = 0
    send_errors: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    bot: str = ""


@dataclass
class Poller:
    settings: Settings
    api: BotApi
    conn: Connection
    username: str
    owner_chat: int
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    report: PollReport = field(default_factory=PollReport)
    seen: int | None = None  # one past the last update received by this poller
    send_paused_until: float = 0.0  # monotonic time: Telegram failed to take a reply, wait before the next try

    # ------------------------------------------------------------------------------------------ one poll
    def poll(self, timeout_s: int) -> int:
        """Send what is queued, finish interrupted exits, fetch and handle one batch; the updates fetched."""
        from tradebot.control import parse_update
        from tradebot.store.telegram import next_offset

        self.flush()
        self.finish_exits()
        offset, last_at = next_offset(self.conn, self.api.bot_id)
        if offset is not None and last_at is not None and self.now() - last_at > OFFSET_MAX_AGE:
            offset = None  # every unconfirmed update; the ones claimed before are skipped by their id
        if self.seen is not None:  # confirm what this poller received (claimed now, or claimed before)
            offset = max(offset or 0, self.seen)
        updates = self.api.get_updates(offset, timeout_s)
        if updates:
            self.seen = max(int(u["update_id"]) for u in updates) + 1
        for raw in updates:
            try:
                u = parse_update(raw)
            except (KeyError, TypeError, ValueError):
                continue
            self.handle(u)
            crashpoint(CRASH_POINT)
        self.flush()
        self.finish_exits()
        if updates and self.settings.metrics_dir is not None:
            self.write_metrics()
        return len(updates)

    def set_commands(self) -> None:
        """Fill the Telegram client's command menu (``setMyCommands``) once per version of the command list;
        a failure only leaves the menu as it was."""
        import hashlib
        import json

        from tradebot.control import HELP
        from tradebot.store.state import get_state, set_state
        from tradebot.telegram_api import BotApiError

        commands = [{"command": name, "description": text[:256]} for name, text in HELP]
        digest = hashlib.sha256(json.dumps(commands).encode()).hexdigest()[:16]
        key = f"telegram_commands:{self.api.bot_id}"
        if (get_state(self.conn, key) or {}).get("digest") == digest:
            return
        try:
            self.api.call("setMyCommands", {"commands": commands}, attempts=1)
        except BotApiError as err:
            log.warning("telegram: the command menu was not set (%s)", err)
            return
        set_state(self.conn, key, {"digest": digest})

    def write_metrics(self) -> None:
        """Rewrite tradebot.prom so the ignored-update and command counters show now, not at the next cycle."""
        from tradebot.app.trading import rewrite_metrics

        try:
            rewrite_metrics(self.settings)
        except (TradebotError, OSError) as err:
            log.warning("telegram: metrics not rewritten (%s)", err)

    def waiting_exit(self) -> float:
        """Seconds left for the Confirm of an exit still asking (0: none)."""
        from tradebot.control import CONFIRM_WINDOW
        from tradebot.store.telegram import open_exits

        left = [(x.asked_at + CONFIRM_WINDOW - self.now()).total_seconds()
                for x in open_exits(self.conn, self.api.bot_id) if x.state == "asked"]
        return max([0.0, *left])

    # ------------------------------------------------------------------------------------------ updates
    def handle(self, u: Incoming) -> None:
        from tradebot.control import Ignore, authorize, parse_command
        from tradebot.store.telegram import Handled

        denied = authorize(u, self.owner_chat, self.settings.telegram_allowed_user_ids)
        cmd = parse_command(u.text, self.username) if denied is None and u.kind == "message" else None
        if isinstance(cmd, Ignore):
            denied, cmd = cmd, None
        if denied is not None:
            # No reply: a reply would tell a stranger the bot exists. Logged without the text.
            log.warning("telegram: ignored update %d (%s): %s from chat %s user %s", u.update_id, u.kind,
                        denied.reason, u.chat_id, u.user_id)
            self._record(Handled(u.update_id, u.kind, "ignored", chat_id=u.chat_id, user_id=u.user_id,
                                 reason=denied.reason), [])
            return
        if cmd is None:
            self.press(u)
        else:
            self.command(u, cmd)

    def _record(self, handled: Handled, replies: list[Outgoing], effect: Any = None) -> bool:
        from tradebot.store.telegram import handle_once

        done = handle_once(self.conn, self.api.bot_id, handled, replies, effect)
        if done:
            self.report.handled.append(handled)
        return done

    def _say(self, text: str, *, exit_id: str | None = None, **extra: Any) -> Outgoing:
        from tradebot.store.telegram import Outgoing

        return Outgoing("sendMessage", {"chat_id": self.owner_chat, "text": text, "parse_mode": "HTML",
                                        "link_preview_options": {"is_disabled": True}, **extra}, exit_id=exit_id)

    @staticmethod
    def _edit(chat_id: int, message_id: int | None, text: str) -> Outgoing:
        """Replace a message's text (and so its keyboard)."""
        from tradebot.store.telegram import Outgoing

        return Outgoing("editMessageText", {"chat_id": chat_id, "message_id": message_id, "text": text,
                                            "parse_mode": "HTML"})

    @staticmethod
    def _who(u: Incoming) -> str:
        """Who asked, as pauses and exits record it."""
        return f"telegram user {u.user_name or u.user_id} ({u.user_id})"

    def _replies(self, text: str) -> list[Outgoing]:
        from tradebot.notify import split_message

        return [self._say(part) for part in split_message(text)]

    def command(self, u: Incoming, cmd: Command) -> None:
        from tradebot import control
        from tradebot.control import STATE_CHANGING, e, expired
        from tradebot.store.telegram import Handled

        name = cmd.name
        who = self._who(u)
        handled = Handled(u.update_id, u.kind, "done", command=f"/{name}" if name else None, chat_id=u.chat_id,
                          user_id=u.user_id)
        if name in STATE_CHANGING and expired(u.sent_at, self.now()):
            sent = u.sent_at.astimezone(UTC).strftime("%H:%M UTC") if u.sent_at else "at an unknown time"
            self._record(replace(handled, outcome="expired", reason="older than 5 minutes"),
                         self._replies(f"⌛ /{e(name)} sent {e(sent)} arrived more than 5 minutes late and was not "
                                       "executed; send it again if you still want it."))
            return
        effect = None
        if name in ("help", "start"):
            text = control.help_text()
        elif name == "status":
            text = self.status()
        elif name == "pnl":
            text = self.pnl(cmd.args[0].lower() if cmd.args else "all")
        elif name == "trades":
            text = self.trades(control.count_arg(cmd.args))
        elif name == "decisions":
            text = self.decisions(control.count_arg(cmd.args))
        elif name == "budget":
            text = self.budget()
        elif name in ("pause", "resume"):
            text, effect = self.pause(name == "pause", cmd.args, who)
        elif name == "exit":
            self.ask_exit(u, handled, cmd.args)
            return
        else:
            text = control.UNKNOWN
        self._record(handled, self._replies(text), effect)

    # ------------------------------------------------------------------------------------------ reads
    def status(self) -> str:
        from tradebot.app.parts import make_exchange
        from tradebot.app.telegram_exit import read_account
        from tradebot.control import MarketStatus, StatusView, status_text
        from tradebot.store.decisions import recent_decisions
        from tradebot.store.state import is_paused, load_last_run

        s = self.settings
        account, error = None, None
        try:
            account = read_account(make_exchange(s, self.conn), s.markets)
        except TradebotError as err:
            error = str(err)
        rows, finished = [], []
        for m in s.markets:
            last = recent_decisions(self.conn, m, s.mode, limit=1)
            outcome = "-"
            if last:
                d = last[-1]
                outcome = ("failed: " + (d.error or "")[:60]) if d.error else (
                    f"{d.action}" + (" (traded)" if d.traded else "") + (" (filtered)" if d.filtered else ""))
            run = load_last_run(self.conn, m, s.mode)
            if run is not None:
                finished.append(run.finished_at - run.duration_s)
            p = account.positions[m] if account else None
            rows.append(MarketStatus(m, p.coin_volume if p else None, p.avg_buy_price if p else None,
                                     p.price if p else None, is_paused(self.conn, m), last[-1].created_at if last else None,
                                     outcome))
        next_run = datetime.fromtimestamp(max(finished), UTC) + timedelta(hours=1) if finished else None
        if next_run is not None and next_run < self.now():
            next_run = None  # overdue: the schedule is not what we guessed
        return status_text(StatusView(s.mode, is_paused(self.conn), tuple(rows),
                                         account.free_krw if account else None, account.equity if account else None,
                                         next_run, error))

    def pnl(self, period: str) -> str:
        from tradebot.app.reports import pnl_reports
        from tradebot.control import pnl_text

        if period not in ("day", "week", "month", "all"):
            return "usage: /pnl [day|week|month|all]"
        now = self.now()
        since = {"day": now.replace(hour=0, minute=0, second=0, microsecond=0), "week": now - timedelta(days=7),
                 "month": now - timedelta(days=30), "all": None}[period]
        reports, _, _ = pnl_reports(self.settings, symbol=None, mode=self.settings.mode, since=since, until=None,
                                    at=None, by=None)
        return pnl_text(period, reports)

    def trades(self, n: int) -> str:
        from tradebot.control import trades_text
        from tradebot.store.trades import TradeFilter, list_trades

        return trades_text(list_trades(self.conn, TradeFilter(mode=self.settings.mode, limit=n)))

    def decisions(self, n: int) -> str:
        from tradebot.control import decisions_text
        from tradebot.store.telegram import latest_decisions

        return decisions_text(latest_decisions(self.conn, self.settings.mode, self.settings.markets, n))

    def budget(self) -> str:
        from tradebot.control import budget_text
        from tradebot.store.decisions import llm_spend

        today, month = llm_spend(self.conn, self.now())
        s = self.settings
        return budget_text(today, month, s.llm_daily_budget_usd, s.llm_monthly_budget_usd, s.usd_krw)

    # ------------------------------------------------------------------------------------------ changes
    def pause(self, paused: bool, args: tuple[str, ...], who: str) -> tuple[str, Any]:
        """``/pause [MARKET|all] [reason]``, ``/resume [MARKET|all]``: (the reply, the effect). A first word
        that is not a market (nor looks like one) starts the reason of a pause of every market."""
        import re

        from tradebot.control import e, parse_markets_arg
        from tradebot.store.state import resume_market, set_paused

        s = self.settings
        first = args[0] if args else None
        target = parse_markets_arg(first, s.markets)
        if isinstance(target, str):
            assert first is not None
            if re.fullmatch(r"[A-Z0-9]{2,10}|[A-Za-z]{3}-[A-Za-z0-9]+", first):
                return e(target), None  # a market we do not trade: say so rather than pause everything
            target, words = s.markets, args
        else:
            words = args[1:]
        every = first is None or first.lower() == "all" or words is args
        reason = " ".join(words)[:200] or ("paused" if paused else "resumed") + " from Telegram"

        def effect(conn: Connection) -> None:
            if paused or every:
                set_paused(conn, paused, reason, None if every else target[0], by=who)
            else:
                resume_market(conn, target[0], reason, s.markets, by=who)

        which = "every market" if every else target[0]
        if paused:
            return f"⏸ New buys of {e(which)} are paused ({e(reason)}). Sells still happen; /resume allows buys.", effect
        return f"▶️ New buys of {e(which)} are allowed again.", effect

    def ask_exit(self, u: Incoming, handled: Handled, args: tuple[str, ...]) -> None:
        from tradebot.app.parts import make_exchange
        from tradebot.app.telegram_exit import read_account, sellable
        from tradebot.control import e, exit_prompt, keyboard, parse_markets_arg
        from tradebot.store.telegram import ask_exit

        s = self.settings
        if s.mode == "live" and not s.telegram_allow_exit:
            self._record(replace(handled, outcome="refused", reason="exit not allowed in live mode"),
                         self._replies("⛔ /exit is off in live mode: set TRADEBOT_TELEGRAM_ALLOW_EXIT=yes to allow it."))
            return
        if not args:
            self._record(handled, self._replies("usage: /exit MARKET|all"))
            return
        target = parse_markets_arg(args[0], s.markets)
        if isinstance(target, str):
            self._record(handled, self._replies(e(target)))
            return
        try:
            lines = sellable(read_account(make_exchange(s, self.conn), target))
        except TradebotError as err:
            self._record(handled, self._replies(f"⚠️ /exit: the account could not be read ({e(err)}); nothing asked."))
            return
        if not lines:
            self._record(handled, self._replies(f"Nothing to sell in {e(', '.join(target))}: no position above "
                                                "Upbit's minimum order."))
            return
        exit_id = str(uuid.uuid4())
        chat, user = u.chat_id, u.user_id
        assert chat is not None and user is not None
        prompt = self._say(exit_prompt(s.mode, lines), exit_id=exit_id, reply_markup=keyboard(exit_id))
        self._record(handled, [prompt], lambda conn: ask_exit(conn, self.api.bot_id, exit_id, chat, user, target,
                                                               s.mode, self.now()))

    def press(self, u: Incoming) -> None:
        from tradebot.control import CONFIRM_WINDOW, parse_press
        from tradebot.store.state import set_paused
        from tradebot.store.telegram import Handled, Outgoing, decide_exit, get_exit

        press = parse_press(u.callback_data)
        ex = get_exit(self.conn, self.api.bot_id, press.exit_id) if press else None
        why = None
        if press is None or ex is None or ex.chat_id != u.chat_id or (ex.message_id is not None and ex.message_id != u.message_id):
            why = "foreign keyboard"
        elif ex.state != "asked":
            why = "old keyboard"  # a double tap, or a press after the question closed: no reply, nothing done
        if why is not None or ex is None or press is None:
            log.warning("telegram: ignored update %d (callback_query): %s from chat %s user %s", u.update_id, why,
                        u.chat_id, u.user_id)
            self._record(Handled(u.update_id, u.kind, "ignored", chat_id=u.chat_id, user_id=u.user_id, reason=why), [])
            return
        handled = Handled(u.update_id, u.kind, "done", command="confirm" if press.confirm else "cancel",
                          chat_id=u.chat_id, user_id=u.user_id)

        def answer(text: str) -> Outgoing:
            return Outgoing("answerCallbackQuery", {"callback_query_id": u.callback_id, "text": text})

        def edit(text: str) -> Outgoing:
            return self._edit(ex.chat_id, u.message_id, text)

        now = self.now()
        if not press.confirm:
            self._record(handled, [answer("Cancelled."), edit("Exit cancelled: nothing sold.")],
                         lambda conn: decide_exit(conn, ex.id, "asked", "cancelled", by=u.user_id, at=now))
            return
        if now - ex.asked_at > CONFIRM_WINDOW or (self.settings.mode == "live" and not self.settings.telegram_allow_exit):
            late = now - ex.asked_at > CONFIRM_WINDOW
            self._record(replace(handled, outcome="expired" if late else "refused",
                                 reason="confirm after 60 s" if late else "exit not allowed in live mode"),
                         [answer("Expired." if late else "Not allowed."),
                          edit("⌛ Exit not done: the Confirm came more than 60 seconds after the question. "
                               "Send /exit again." if late else "⛔ Exit not done: /exit is off in live mode.")],
                         lambda conn: decide_exit(conn, ex.id, "asked", "expired" if late else "failed", by=u.user_id, at=now))
            return
        who = self._who(u)

        def confirm(conn: Connection) -> list[Outgoing] | None:
            if not decide_exit(conn, ex.id, "asked", "confirmed", by=u.user_id, at=now):
                return []  # the question closed meanwhile (another poller took a press first): nothing done
            every = ex.markets == self.settings.markets
            for m in (None,) if every else ex.markets:
                set_paused(conn, True, "emergency exit from Telegram", m, by=who)
            return None

        self._record(handled, [answer("Selling…"), edit(f"⏳ Exit confirmed by {who}: selling…")], confirm)

    def finish_exits(self) -> None:
        """Run exits confirmed in this batch, resume ones a dead poller left confirmed (within 5 minutes of the
        Confirm; older: not run, the owner is told) and close questions whose minute has passed."""
        from tradebot.control import COMMAND_MAX_AGE, CONFIRM_WINDOW
        from tradebot.store.telegram import decide_exit, open_exits, queue

        for ex in open_exits(self.conn, self.api.bot_id):
            now = self.now()
            if ex.state == "asked":
                if now - ex.asked_at > CONFIRM_WINDOW:
                    text = "⌛ Exit not confirmed within 60 seconds: nothing sold."
                    with self.conn.transaction():  # closed and told together
                        if decide_exit(self.conn, ex.id, "asked", "expired", at=now):
                            queue(self.conn, self.api.bot_id, [self._say(text) if ex.message_id is None
                                                               else self._edit(ex.chat_id, ex.message_id, text)])
                continue
            if ex.decided_at is not None and now - ex.decided_at > COMMAND_MAX_AGE:
                with self.conn.transaction():
                    if decide_exit(self.conn, ex.id, "confirmed", "failed", result="interrupted, not resumed"):
                        queue(self.conn, self.api.bot_id, [self._say(
                            "⚠️ An exit confirmed at " + ex.decided_at.strftime("%H:%M UTC") + " was interrupted and is "
                            "more than 5 minutes old: it was not finished. Check /status and send /exit again if needed.")])
                continue
            self.run_exit(ex)
        self.flush()

    def run_exit(self, ex: ExitRequest) -> None:
        from tradebot.app.telegram_exit import run_exit
        from tradebot.store.telegram import decide_exit, queue

        who = f"telegram user {ex.decided_by}"
        ok, text = run_exit(self.settings, ex, who)
        with self.conn.transaction():
            if decide_exit(self.conn, ex.id, "confirmed", "done" if ok else "failed", result=text[:2000]):
                queue(self.conn, self.api.bot_id, self._replies(text))
        self.report.exits.append(text)

    # ------------------------------------------------------------------------------------------ sending
    def flush(self) -> None:
        """Send the queued replies, oldest first. Telegram refusing one for good (400: a callback answered too
        late, a message gone) marks it done with the error; a transient failure (5xx, network) leaves it and the
        rest for 30 s — the next poll of a service, the next minute's ``--once`` — so an outage is not hammered."""
        from tradebot.store.telegram import mark_send_failed, mark_sent, unsent
        from tradebot.telegram_api import BotApiError

        if time.monotonic() < self.send_paused_until:
            return
        for outbox_id, out in unsent(self.conn, self.api.bot_id):
            try:
                # One try (two after a 429's wait): the outbox is the retry.
                result = self.api.call(out.method, out.payload, attempts=2, retry_server_errors=False)
            except BotApiError as err:
                mark_send_failed(self.conn, outbox_id, str(err), final=not err.transient)
                self.report.send_errors.append(str(err))
                if err.transient:
                    self.send_paused_until = time.monotonic() + SEND_PAUSE_S
                    return  # keep the order of replies: the rest waits too
                continue
            message_id = result.get("message_id") if isinstance(result, dict) else None
            mark_sent(self.conn, outbox_id, out.exit_id, message_id)
            self.report.sent += 1


def poll(settings: Settings, *, once: bool, timeout_s: int = POLL_TIMEOUT_S, wait_for_confirm: bool = True,
         now: Callable[[], datetime] | None = None) -> PollReport:
    """``tradebot telegram``: handle the owner's commands (see the module docstring). Raises ConfigError
    (exit 2: no token or chat, a revoked token), LockedError (exit 75: another poller), TradebotError (exit 1)."""
    from tradebot.store.db import check_schema, connect
    from tradebot.store.state import try_lock
    from tradebot.telegram_api import BotApi

    settings.require("telegram_bot_token", "telegram_chat_id")
    assert settings.telegram_bot_token is not None and settings.telegram_chat_id is not None
    try:
        owner_chat = int(settings.telegram_chat_id)
    except ValueError:
        raise ConfigError("TELEGRAM_CHAT_ID", "must be a numeric chat id to take commands (a @channel cannot send "
                          "them)") from None
    api = BotApi(settings.telegram_bot_token.reveal(), settings.telegram_api_url)
    conn = connect(database_url(settings), autocommit=True)
    stop: list[int] = []
    try:
        check_schema(conn)
        if not try_lock(conn, f"tradebot-telegram:{api.bot_id}"):
            raise LockedError("another `tradebot telegram` is polling this bot; nothing done")
        me = api.get_me()
        poller = Poller(settings, api, conn, str(me["username"]), owner_chat)
        if now is not None:
            poller.now = now
        poller.report.bot = "@" + str(me["username"])
        poller.set_commands()
        if once:
            for _ in range(ONCE_MAX_POLLS):  # a flood of updates cannot keep a cron run alive
                waiting = poller.waiting_exit() if wait_for_confirm else 0.0
                got = poller.poll(min(int(waiting) + 1, timeout_s) if waiting > 0 else 0)
                if not got and not (wait_for_confirm and poller.waiting_exit() > 0):
                    break
            return poller.report
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda n, f: stop.append(n))
        failures = 0
        while not stop:
            try:
                poller.poll(timeout_s)
                failures = 0
            except StorageError:
                raise
            except TradebotError as err:
                if isinstance(err, (ConfigError, LockedError)):
                    raise
                failures += 1  # Telegram unreachable: the retries inside each call are spent
                if failures >= 3:
                    raise
                log.warning("telegram: %s; polling again in %d s", err, 5 * failures)
                time.sleep(5 * failures)
        return poller.report
    finally:
        conn.close()
