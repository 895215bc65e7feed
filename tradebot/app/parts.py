"""Building the real parts from settings: the database URL (the embedded server when ``DATABASE_URL`` is
unset), the exchange (live adapter or paper broker), the advisor, the notifier, and the cycle's locked
connection. Everything else in :mod:`tradebot.app` gets its parts here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tradebot.errors import LockedError
from tradebot.infra.faults import crashpoint

if TYPE_CHECKING:
    from tradebot.advisor import Advisor
    from tradebot.config import Settings
    from tradebot.cycle import Notifier
    from tradebot.exchange.base import Exchange
    from tradebot.store.db import Connection


def database_url(settings: Settings) -> str:
    """The configured DATABASE_URL, or the embedded server's (created and started when needed)."""
    if settings.database_url:
        return settings.database_url
    from tradebot.infra.localpg import LocalPostgres

    return LocalPostgres(settings.state_dir / "postgres").start()


def market_data(settings: Settings) -> Any:
    """The Upbit REST adapter at ``UPBIT_API_URL`` (keys optional: public endpoints need none)."""
    from tradebot.exchange.upbit import UpbitExchange

    access = settings.upbit_access_key.reveal() if settings.upbit_access_key else ""
    secret = settings.upbit_secret_key.reveal() if settings.upbit_secret_key else ""
    return UpbitExchange(access, secret, settings.upbit_api_url, poll_timeout_s=float(settings.order_poll_timeout_s),
                         crashpoint=crashpoint)


def make_exchange(settings: Settings, conn: Connection) -> Exchange:
    """Live: the Upbit adapter (keys required). Paper: the paper broker over real market data."""
    if settings.mode == "live":
        settings.require("upbit_access_key", "upbit_secret_key")
        return market_data(settings)  # type: ignore[no-any-return]
    from tradebot.exchange.paper import PaperExchange

    return PaperExchange(market_data(settings), conn, settings.paper_krw)


def make_advisor(settings: Settings, conn: Connection | None = None) -> Advisor:
    """The configured advisor. Claude comes with the owner's prices and prompt-cache setting and, with a
    budget set and a database to sum the spend from, under the caps (:mod:`tradebot.advisor.budget`)."""
    if settings.advisor == "rules":
        from tradebot.advisor.rules import RulesAdvisor

        return RulesAdvisor()
    settings.require("anthropic_api_key")
    from tradebot.advisor.claude import ClaudeAdvisor
    from tradebot.advisor.claude.pricing import configured_price

    assert settings.anthropic_api_key is not None
    claude = ClaudeAdvisor(settings.anthropic_api_key.reveal(), settings.model, base_url=settings.anthropic_base_url,
                           timeout_s=float(settings.llm_timeout_s), max_retries=settings.llm_max_retries,
                           prices=configured_price(settings.model, settings.model_input_usd_per_mtok,
                                                   settings.model_output_usd_per_mtok,
                                                   settings.model_cache_read_usd_per_mtok,
                                                   settings.model_cache_write_usd_per_mtok),
                           cache=settings.prompt_cache)
    if conn is None or (settings.llm_daily_budget_usd is None and settings.llm_monthly_budget_usd is None):
        return claude
    from datetime import UTC, datetime

    from tradebot.advisor.budget import BudgetedAdvisor, Caps, Spend
    from tradebot.advisor.rules import RulesAdvisor
    from tradebot.store.decisions import llm_spend

    def spend() -> Spend:
        return Spend(*llm_spend(conn, datetime.now(UTC)))

    return BudgetedAdvisor(claude, RulesAdvisor(), Caps(settings.llm_daily_budget_usd, settings.llm_monthly_budget_usd),
                           spend)


def make_notifier(settings: Settings) -> Notifier:
    from tradebot.notify import NullNotifier, TelegramNotifier

    if settings.telegram_bot_token and settings.telegram_chat_id:
        return TelegramNotifier(settings.telegram_bot_token.reveal(), settings.telegram_chat_id, settings.telegram_api_url)
    return NullNotifier()


@contextmanager
def cycle_connection(settings: Settings) -> Iterator[Connection]:
    """An autocommit connection (every write durable before the next step) holding the cycle lock of every
    configured market (another run holding one of them: exit 75 at once, nothing done) and the account's lock
    (another run on the same account over other markets: waited for, up to TRADEBOT_LOCK_WAIT_S). Markets
    are locked in sorted order, so two runs with overlapping lists never wait on each other in a circle."""
    from tradebot.store.db import check_schema, connect
    from tradebot.store.state import try_cycle_lock, wait_for_account_lock

    conn = connect(database_url(settings), autocommit=True)
    try:
        check_schema(conn)
        for market in sorted(settings.markets):
            if not try_cycle_lock(conn, market, settings.mode):
                raise LockedError(f"another cycle for {market} ({settings.mode}) is running; nothing done")
        # Another market's run on the same account spends the same KRW: wait for it, do not run beside it.
        if not wait_for_account_lock(conn, settings.mode, settings.lock_wait_s):
            raise LockedError(f"another run on this {settings.mode} account has been busy for over "
                              f"{settings.lock_wait_s} s (TRADEBOT_LOCK_WAIT_S); nothing done")
        yield conn
    finally:
        conn.close()

