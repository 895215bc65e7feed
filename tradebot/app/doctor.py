"""``tradebot doctor``: one check per line, each with what to do when it fails. Never places an order.

Every check only reads: the exchange is asked for a price and the balances, Anthropic for the model's
description (the free Models API, no tokens generated), Telegram for the bot's name (``getMe``, no message
sent). The only thing doctor may create is the embedded PostgreSQL when ``DATABASE_URL`` is not set, exactly
as every other command would.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.errors import ExchangeTransientError, StorageError, TradebotError

if TYPE_CHECKING:
    import psycopg

    from tradebot.config import Settings
    from tradebot.exchange.upbit import UpbitExchange
    from tradebot.models import Market


@dataclass(frozen=True)
class Check:
    """One line of the report. A failed check that is not ``required`` is a warning (``!``)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def run_checks(env_file: Path, *, explicit_env_file: bool) -> list[Check]:
    """Load the settings, then run every check (a configuration error is the only check then)."""
    from tradebot.config import load_settings

    try:
        settings = load_settings(env_file, explicit_env_file=explicit_env_file)
    except TradebotError as e:
        return [Check("configuration", False, _text(e), "fix the variable in your env file (see .env.example)")]
    return check_settings(settings)


def check_settings(settings: Settings) -> list[Check]:
    """Every check for already-loaded settings, in order."""
    checks: list[Check] = []
    source = f"from {settings.env_file}" if settings.env_file else "from the environment (no env file)"
    checks.append(Check("configuration", True,
                        f"{settings.mode} mode, {', '.join(settings.markets)}, advisor {settings.advisor}, {source}"))
    if settings.env_file:
        perm = _env_file_permissions(settings.env_file)
        if perm:
            checks.append(perm)
    state = _writable_dir("state directory", settings.state_dir, "TRADEBOT_STATE_DIR", may_create=True)
    if state.ok and settings.state_dir.is_dir():
        state = _private_dir(settings.state_dir) or state
    checks.append(state)
    if settings.metrics_dir:
        # Metrics failures never stop trading, so a bad metrics directory is a warning.
        checks.append(_writable_dir("metrics directory", settings.metrics_dir, "TRADEBOT_METRICS_DIR",
                                    may_create=False, required=False))
    else:
        checks.append(Check("metrics directory", False, "TRADEBOT_METRICS_DIR is not set, no metrics will be written",
                            "set it to node_exporter's textfile directory", required=False))
    checks += _database_checks(settings)
    checks += _upbit_checks(settings)
    checks += _anthropic_checks(settings)
    checks += _telegram_checks(settings)
    return checks


def _text(e: BaseException) -> str:
    """An error message on one line (some drivers put tabs and newlines into theirs)."""
    return " ".join(str(e).split())


# ------------------------------------------------------------------------------------------ local files
def _env_file_permissions(path: Path) -> Check | None:
    """A warning when anyone but this user (or root) could read or change the env file, which holds the API
    keys: the file readable or writable by group or others, owned by another user, or in a directory that
    group or others may write to (sticky or not: they can replace the file, or plant one before it exists),
    or under a directory another user could rename (they could swap in a tree of their own)."""
    try:
        st = path.stat()
    except OSError:
        return None
    mode_text = stat.filemode(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return Check("env file permissions", True, f"{path} is not a regular file ({mode_text}), so no secret is kept in it")
    me = os.geteuid()
    problems: list[str] = []
    fixes: list[str] = []
    if st.st_mode & 0o077:
        how = " or ".join(w for w, bits in (("readable", 0o044), ("writable", 0o022)) if st.st_mode & bits) or "accessible"
        problems.append(f"{path} is {how} by group or others ({mode_text})")
        fixes.append(f"chmod 600 {path}")
    if st.st_uid not in (me, 0):
        problems.append(f"{path} is owned by {_user(st.st_uid)}, not by {_user(me)} who runs tradebot, so that user can change it")
        fixes.append(f"chown {_user(me)} {path}")
    # The directory of the path as given and, through a symlink, of the real file.
    parents = dict.fromkeys((Path(os.path.abspath(path)).parent, Path(os.path.realpath(path)).parent))
    for directory in parents:
        for i, d in enumerate((directory, *directory.parents)):
            try:
                dst = d.stat()
            except OSError:
                continue
            writable = dst.st_mode & 0o022 and (i == 0 or not dst.st_mode & stat.S_ISVTX)
            where = "its directory " if i == 0 else "a directory above it, "
            if writable:
                problems.append(f"{where}{d} may be written by group or others ({stat.filemode(dst.st_mode)}), "
                                "so they can replace the file")
                fixes.append(f"chmod go-w {d}, or keep the env file in a directory only {_user(me)} can write to")
            elif dst.st_uid not in (me, 0):
                problems.append(f"{where}{d} is owned by {_user(dst.st_uid)}, who can replace what is in it")
                fixes.append(f"keep the env file in a directory owned by {_user(me)} or root")
    if problems:
        return Check("env file permissions", False, "; ".join(dict.fromkeys(problems)), "; ".join(dict.fromkeys(fixes)),
                     required=False)
    return Check("env file permissions", True, f"{path} is private ({mode_text})")


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _private_dir(path: Path) -> Check | None:
    """A warning when the state directory (journal, crash files, the embedded database) is open to other
    users. As root, group ``postgres`` may pass through (the embedded server runs as that user)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    root = os.geteuid() == 0
    if not mode & 0o077 & ~(0o010 if root else 0):
        return None
    fix = f"chown root:postgres {path} && chmod 710 {path}" if root else f"chmod 700 {path}"
    return Check("state directory", False, f"{path} is writable but open to other users ({stat.filemode(mode | stat.S_IFDIR)}); "
                 "it holds the fill journal and the embedded database", fix, required=False)


def _writable_dir(name: str, path: Path, variable: str, *, may_create: bool, required: bool = True) -> Check:
    """Probe with a real file rather than ``os.access`` (which ignores read-only mounts and ACLs).

    A missing directory is not created: with ``may_create`` (tradebot creates it when it first needs it) the
    nearest existing parent must be writable instead.
    """
    fix = f"create it and make it writable for this user, or set {variable}"
    target = path
    if not path.is_dir():
        if path.exists():
            return Check(name, False, f"{path} is not a directory", f"set {variable} to a directory", required)
        if not may_create:
            return Check(name, False, f"{path} does not exist", fix, required)
        target = next((p for p in path.parents if p.exists()), Path("/"))
    probe = target / f".tradebot-doctor-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        where = path if target == path else f"{target} (to create {path})"
        return Check(name, False, f"{where} is not writable ({e.strerror or type(e).__name__})", fix, required)
    if target != path:
        return Check(name, True, f"{path} will be created ({target} is writable)")
    return Check(name, True, f"{path} is writable")


# ---------------------------------------------------------------------------------------------- database
def _database_checks(settings: Settings) -> list[Check]:
    import psycopg

    from tradebot.app.parts import database_url
    from tradebot.store.db import check_schema, connect, describe_target

    fix = ("check DATABASE_URL and that PostgreSQL is running" if settings.database_url
           else "set DATABASE_URL, or start the embedded server with `tradebot local-db start`")
    try:
        url = database_url(settings)  # starts the embedded server when DATABASE_URL is unset
        target = describe_target(url)
        conn = connect(url)
    except TradebotError as e:
        return [Check("database", False, _text(e), fix)]
    with conn:
        checks = [Check("database", True, f"connected to {target}" + ("" if settings.database_url else " (embedded)"))]
        try:
            version = check_schema(conn)
            checks.append(Check("schema", True, f"version {version}"))
        except TradebotError as e:  # the message says what to run
            checks.append(Check("schema", False, _text(e)))
        except psycopg.Error as e:
            checks.append(Check("schema", False, f"cannot read the schema version ({type(e).__name__})",
                                "check that the DATABASE_URL user may read the tradebot tables"))
        if not settings.database_url:
            checks.append(_embedded_access_check(settings, conn))
    return checks


def _embedded_access_check(settings: Settings, conn: psycopg.Connection[Any]) -> Check:
    """The embedded cluster must be closed to every other local user (see tradebot/infra/localpg.py)."""
    from tradebot.infra.localpg import BOT_ROLE, Exposure, LocalPostgres
    from tradebot.store.db import role_is_superuser

    problems = LocalPostgres(settings.state_dir / "postgres").exposure()
    try:
        if role_is_superuser(conn):
            problems.append(Exposure("the bot connects as a superuser", "run `tradebot local-db start` (it upgrades older clusters)"))
    except StorageError as e:
        problems.append(Exposure(f"cannot read the bot's role ({e.reason})", "check the embedded PostgreSQL's log"))
    if problems:
        return Check("database access", False, "; ".join(p.problem for p in problems),
                     "; ".join(dict.fromkeys(p.fix for p in problems)))
    return Check("database access", True, f"embedded PostgreSQL reachable only by this unix user (socket in a private "
                                          f"directory, peer authentication, no TCP); role {BOT_ROLE} is not a superuser")


# ------------------------------------------------------------------------------------------------- Upbit
def _upbit_checks(settings: Settings) -> list[Check]:
    from tradebot.exchange.upbit import UpbitExchange
    from tradebot.notify import format_krw

    access = settings.upbit_access_key.reveal() if settings.upbit_access_key else ""
    secret = settings.upbit_secret_key.reveal() if settings.upbit_secret_key else ""
    # Read-only calls only: a price and the balances. One retry keeps an unreachable host under ~7 s.
    exchange = UpbitExchange(access, secret, settings.upbit_api_url, timeout=(3.05, 5), get_retries=1)
    checks: list[Check] = []
    try:
        try:
            if len(settings.markets) > 1:
                checks += _portfolio_market_checks(exchange, settings)
            else:
                price = exchange.ticker_price(settings.market)
                checks.append(Check("upbit market data", True,
                                    f"{settings.market} last price {format_krw(price)} KRW from {settings.upbit_api_url}"))
        except TradebotError as e:
            reached = getattr(e, "status", None) is not None and not isinstance(e, ExchangeTransientError)
            fix = (f"check that TRADEBOT_TICKER ({settings.market}) is an Upbit KRW market" if reached
                   else f"check UPBIT_API_URL ({settings.upbit_api_url}) and the network")
            if reached and getattr(e, "status", None) == 404:
                fix = _unlisted_fix(exchange, settings.market) or fix
            checks.append(Check("upbit market data", False, _text(e), fix))
        if access and secret:
            try:
                balances = exchange.balances()
                krw = next((b.free for b in balances if b.currency == "KRW"), None)
                n = len(balances)
                checks.append(Check("upbit account", True, f"{n} balance{'' if n == 1 else 's'}"
                                    + (f", free KRW {format_krw(krw)}" if krw is not None else "")))
            except TradebotError as e:
                # A rejected key's message already names both variables and the IP allow-list.
                said = "UPBIT_SECRET_KEY" in _text(e)
                checks.append(Check("upbit account", False, _text(e),
                                    "" if said else "check UPBIT_ACCESS_KEY, UPBIT_SECRET_KEY and the key's allowed IP addresses",
                                    required=settings.mode == "live"))
        elif settings.mode == "live":
            checks.append(Check("upbit account", False, "live mode but UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY are not set",
                                "set both keys, or TRADEBOT_MODE=paper"))
        elif access or secret:
            checks.append(Check("upbit account", False, "only one of UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY is set",
                                "set both keys (paper mode does not need them)", required=False))
    finally:
        exchange.close()
    return checks


def _unlisted_fix(exchange: UpbitExchange, market: Market) -> str | None:
    """What to do about a market Upbit does not know: its KRW markets closest to the name, from Upbit's list
    (None when the list cannot be read either)."""
    from tradebot.portfolio import unlisted_hint

    try:
        return unlisted_hint(market, exchange.listed_markets())
    except TradebotError:
        return None


def _portfolio_market_checks(exchange: UpbitExchange, settings: Settings) -> list[Check]:
    """Several markets: every one checked against Upbit's market list (an unlisted one is named with close
    matches: every cycle skips it), and the listed ones priced in one request."""
    from tradebot.notify import format_krw
    from tradebot.portfolio import unlisted_hint

    listed = exchange.listed_markets()
    known = [m for m in settings.markets if m in listed]
    unknown = [m for m in settings.markets if m not in listed]
    checks = []
    if unknown:
        checks.append(Check("upbit markets", False, "; ".join(unlisted_hint(m, listed) for m in unknown),
                            "fix TRADEBOT_MARKETS: every cycle skips a market Upbit does not list (and exits 1)"))
    if known:
        prices = exchange.ticker_prices(known)
        checks.append(Check("upbit market data", True, ", ".join(f"{m} {format_krw(prices[m])}" for m in known)
                            + f" KRW from {settings.upbit_api_url}"))
    return checks


# --------------------------------------------------------------------------------------------- Anthropic
def _anthropic_checks(settings: Settings) -> list[Check]:
    if settings.advisor != "claude":
        return [Check("anthropic", True, "not used (advisor: rules)")]
    if not settings.anthropic_api_key:
        return [Check("anthropic", False, "TRADEBOT_ADVISOR=claude but ANTHROPIC_API_KEY is not set",
                      "set ANTHROPIC_API_KEY, or TRADEBOT_ADVISOR=rules")]
    from tradebot.advisor.claude import check_model

    try:
        detail = check_model(settings.anthropic_api_key.reveal(), settings.model,
                             base_url=settings.anthropic_base_url)
    except TradebotError as e:
        fix = getattr(e, "fix", "") or "check ANTHROPIC_API_KEY and TRADEBOT_MODEL"
        return [Check("anthropic", False, _text(e), fix)]
    price = _price_check(settings)
    return [Check("anthropic", True, detail)] + ([price] if price else [])


def _price_check(settings: Settings) -> Check | None:
    """A warning when the model's price is not known (neither the built-in table nor
    TRADEBOT_MODEL_*_USD_PER_MTOK): budgets and the scorecard's cost figures depend on it, and the Opus-level
    fallback is used. None when it is known."""
    from tradebot.advisor.claude.pricing import configured_price, price_for

    try:
        table = configured_price(settings.model, settings.model_input_usd_per_mtok, settings.model_output_usd_per_mtok,
                                 settings.model_cache_read_usd_per_mtok, settings.model_cache_write_usd_per_mtok)
    except TradebotError as e:
        return Check("model price", False, _text(e), "set TRADEBOT_MODEL_INPUT_USD_PER_MTOK and …_OUTPUT_… together")
    p = price_for(settings.model, table)
    if p is None:
        return Check("model price", False, f"no known price for {settings.model}: its cost is counted at the Opus-level "
                     "fallback (5/25 USD per million input/output tokens)",
                     "set TRADEBOT_MODEL_INPUT_USD_PER_MTOK and TRADEBOT_MODEL_OUTPUT_USD_PER_MTOK from Anthropic's "
                     "pricing page", required=False)
    return None


# ---------------------------------------------------------------------------------------------- Telegram
def _telegram_checks(settings: Settings) -> list[Check]:
    # Unconfigured Telegram is a warning; configured (token and chat id) but broken is an error.
    if not settings.telegram_bot_token:
        return [Check("telegram", False, "TELEGRAM_BOT_TOKEN is not set, no notifications will be sent",
                      "create a bot with @BotFather and set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID", required=False)]
    if not settings.telegram_chat_id:
        return [Check("telegram", False, "TELEGRAM_CHAT_ID is not set, no notifications will be sent",
                      "set the chat id that should receive messages", required=False)]
    from tradebot.notify import TelegramNotifier

    notifier = TelegramNotifier(settings.telegram_bot_token.reveal(), settings.telegram_chat_id,
                                settings.telegram_api_url, timeout=(3.05, 5))
    try:
        name = notifier.check()  # getMe: proves the token without sending anything
    except TradebotError as e:
        return [Check("telegram", False, _text(e), "check TELEGRAM_BOT_TOKEN (from @BotFather) and TELEGRAM_API_URL")]
    return [Check("telegram", True, f"bot {name}, chat {settings.telegram_chat_id}")]
