"""``tradebot doctor``: one check per line, each with what to do when it fails. Never places an order."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradebot.errors import TradebotError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # a failed optional check is a warning


def _env_file_permissions(path: Path) -> Check | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return Check("env file permissions", False, f"{path} is readable by group or others ({stat.filemode(mode)})",
                     f"chmod 600 {path}", required=False)
    return Check("env file permissions", True, f"{path} is private ({stat.filemode(mode)})")


def _writable_dir(name: str, path: Path, variable: str) -> Check:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".tradebot-doctor-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return Check(name, False, f"{path} is not writable ({e.strerror or type(e).__name__})",
                     f"create it and make it writable for this user, or set {variable}")
    return Check(name, True, f"{path} is writable")


def run_checks(env_file: Path, *, explicit_env_file: bool) -> list[Check]:
    """Load the settings, then run every check (a configuration error is the only check then)."""
    from tradebot.config import load_settings

    try:
        settings = load_settings(env_file, explicit_env_file=explicit_env_file)
    except TradebotError as e:
        return [Check("configuration", False, str(e), "fix the variable in your env file (see .env.example)")]
    return check_settings(settings)


def check_settings(settings: Any) -> list[Check]:
    """Every check for already-loaded settings, in order."""
    checks: list[Check] = []
    source = f"from {settings.env_file}" if settings.env_file else "from the environment (no env file)"
    checks.append(Check("configuration", True, f"{settings.mode} mode, {settings.ticker}, advisor {settings.advisor}, {source}"))
    if settings.env_file:
        perm = _env_file_permissions(settings.env_file)
        if perm:
            checks.append(perm)
    checks.append(_writable_dir("state directory", settings.state_dir, "TRADEBOT_STATE_DIR"))
    if settings.metrics_dir:
        checks.append(_writable_dir("metrics directory", settings.metrics_dir, "TRADEBOT_METRICS_DIR"))
    else:
        checks.append(Check("metrics directory", False, "TRADEBOT_METRICS_DIR is not set, no metrics will be written",
                            "set it to node_exporter's textfile directory", required=False))
    checks += _database_checks(settings)
    checks += _upbit_checks(settings)
    checks += _anthropic_checks(settings)
    checks += _telegram_checks(settings)
    return checks


def _database_checks(settings: Any) -> list[Check]:
    from tradebot.store.db import check_schema, connect, database_url, describe_target

    try:
        url = database_url(settings)
        target = describe_target(url)
        conn = connect(url)
    except TradebotError as e:
        return [Check("database", False, str(e), "check DATABASE_URL and that PostgreSQL is running")]
    with conn:
        checks = [Check("database", True, f"connected to {target}" + ("" if settings.database_url else " (embedded)"))]
        try:
            version = check_schema(conn)
            checks.append(Check("schema", True, f"version {version}"))
        except TradebotError as e:
            checks.append(Check("schema", False, str(e)))
    return checks


def _upbit_checks(settings: Any) -> list[Check]:
    from tradebot.exchange.upbit import UpbitExchange

    access = settings.upbit_access_key.reveal() if settings.upbit_access_key else ""
    secret = settings.upbit_secret_key.reveal() if settings.upbit_secret_key else ""
    exchange = UpbitExchange(access, secret, settings.upbit_api_url, timeout=(3.05, 5))
    checks: list[Check] = []
    try:
        price = exchange.ticker_price(settings.ticker)
        checks.append(Check("upbit market data", True, f"{settings.ticker} last price {price:,f} KRW from {settings.upbit_api_url}"))
    except TradebotError as e:
        checks.append(Check("upbit market data", False, str(e), f"check UPBIT_API_URL ({settings.upbit_api_url}) and the network"))
    if settings.upbit_access_key and settings.upbit_secret_key:
        try:
            balances = exchange.balances()
            krw = next((b.free for b in balances if b.currency == "KRW"), None)
            checks.append(Check("upbit account", True, f"{len(balances)} balances, free KRW {krw:,f}" if krw is not None else f"{len(balances)} balances"))
        except TradebotError as e:
            checks.append(Check("upbit account", False, str(e), "check UPBIT_ACCESS_KEY, UPBIT_SECRET_KEY and the key's allowed IP addresses",
                                required=settings.mode == "live"))
    elif settings.mode == "live":
        checks.append(Check("upbit account", False, "live mode but UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY are not set",
                            "set both keys, or TRADEBOT_MODE=paper"))
    return checks


def _anthropic_checks(settings: Any) -> list[Check]:
    if settings.advisor != "claude":
        return [Check("anthropic", True, "not used (advisor: rules)")]
    if not settings.anthropic_api_key:
        return [Check("anthropic", False, "TRADEBOT_ADVISOR=claude but ANTHROPIC_API_KEY is not set",
                      "set ANTHROPIC_API_KEY, or TRADEBOT_ADVISOR=rules")]
    from tradebot.advisor.claude import check_model

    try:
        detail = check_model(settings.anthropic_api_key.reveal(), settings.model, base_url=settings.anthropic_base_url)
    except TradebotError as e:
        return [Check("anthropic", False, str(e), "check ANTHROPIC_API_KEY and TRADEBOT_MODEL")]
    return [Check("anthropic", True, detail)]


def _telegram_checks(settings: Any) -> list[Check]:
    if not settings.telegram_bot_token:
        return [Check("telegram", False, "TELEGRAM_BOT_TOKEN is not set, no notifications will be sent",
                      "create a bot with @BotFather and set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID", required=False)]
    if not settings.telegram_chat_id:
        return [Check("telegram", False, "TELEGRAM_CHAT_ID is not set", "set the chat id that should receive messages", required=False)]
    from tradebot.notify import TelegramNotifier

    notifier = TelegramNotifier(settings.telegram_bot_token.reveal(), settings.telegram_chat_id, settings.telegram_api_url)
    try:
        name = notifier.check()
    except TradebotError as e:
        return [Check("telegram", False, str(e), "check TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL")]
    return [Check("telegram", True, f"bot {name}")]
