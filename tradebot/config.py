"""Settings: one typed, validated object built from the environment and an explicit ``.env`` file.

Precedence: command-line option > process environment > ``.env`` file > default. The ``.env`` file is
read with python-dotenv from an explicit path (``--env-file``, default ``./.env`` when it exists) and is
*not* copied into ``os.environ``, so nothing downstream (the Anthropic SDK, subprocesses) picks up values
behind our back. Every problem is reported as ``ConfigError(variable, how to fix)``; the CLI turns that into
``Error: VARIABLE ...`` and exit code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from tradebot.errors import ConfigError

TICKER_RE = re.compile(r"^[A-Z]{2,5}-[A-Z0-9]{1,15}$")
DEFAULT_MODEL = "claude-sonnet-4-6"


class Secret:
    """A string that never shows itself: ``str``/``repr`` print a mask; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        """Says that the value is set, and its length, without disclosing any character of it."""
        return f"**** (set, {len(self._value)} chars)"

    def __str__(self) -> str:
        return "****"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Every setting of tradebot. Built by :func:`load_settings`; see ``.env.example`` for each variable."""

    database_url: str | None  # None: the embedded PostgreSQL under state_dir
    upbit_access_key: Secret | None
    upbit_secret_key: Secret | None
    upbit_api_url: str
    anthropic_api_key: Secret | None
    anthropic_base_url: str | None
    model: str
    telegram_bot_token: Secret | None
    telegram_chat_id: str | None
    telegram_api_url: str
    ticker: str
    mode: Literal["paper", "live"]
    metrics_dir: Path | None
    state_dir: Path
    paper_krw: Decimal
    advisor: Literal["claude", "rules"]
    backtest_filter: bool
    backtest_filter_threshold: Decimal  # filter when the backtest return is below -threshold
    min_confidence: Decimal
    max_order_krw: Decimal
    max_position_krw: Decimal
    daily_loss_limit_krw: Decimal
    hourly_candles: int
    daily_candles: int
    llm_timeout_s: Decimal
    llm_max_retries: int
    order_poll_timeout_s: Decimal
    env_file: Path | None  # the .env file that was read, if any

    def require(self, *names: str) -> None:
        """Raise ConfigError for the first of ``names`` (attribute names) that is not set."""
        for name in names:
            if getattr(self, name) in (None, ""):
                var = ENV_NAMES[name]
                raise ConfigError(var, f"is not set; {REQUIRED_HINTS.get(var, 'set it in the env file')}")

    def public_items(self) -> list[tuple[str, str]]:
        """(VARIABLE, value) pairs for ``config show``; secrets masked."""
        out: list[tuple[str, str]] = []
        for f in fields(self):
            if f.name == "env_file":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                text = value.masked()
            elif value is None:
                text = "(not set)"
            elif isinstance(value, bool):
                text = "on" if value else "off"
            else:
                text = str(value)
            if f.name == "database_url" and value is not None:
                text = mask_url_password(str(value))
            if f.name == "database_url" and value is None:
                text = f"(not set: embedded PostgreSQL in {self.state_dir / 'postgres'})"
            out.append((ENV_NAMES[f.name], text))
        return out


ENV_NAMES: dict[str, str] = {
    "database_url": "DATABASE_URL",
    "upbit_access_key": "UPBIT_ACCESS_KEY",
    "upbit_secret_key": "UPBIT_SECRET_KEY",
    "upbit_api_url": "UPBIT_API_URL",
    "anthropic_api_key": "ANTHROPIC_API_KEY",
    "anthropic_base_url": "ANTHROPIC_BASE_URL",
    "model": "TRADEBOT_MODEL",
    "telegram_bot_token": "TELEGRAM_BOT_TOKEN",
    "telegram_chat_id": "TELEGRAM_CHAT_ID",
    "telegram_api_url": "TELEGRAM_API_URL",
    "ticker": "TRADEBOT_TICKER",
    "mode": "TRADEBOT_MODE",
    "metrics_dir": "TRADEBOT_METRICS_DIR",
    "state_dir": "TRADEBOT_STATE_DIR",
    "paper_krw": "TRADEBOT_PAPER_KRW",
    "advisor": "TRADEBOT_ADVISOR",
    "backtest_filter": "TRADEBOT_BACKTEST_FILTER",
    "backtest_filter_threshold": "TRADEBOT_BACKTEST_FILTER_THRESHOLD",
    "min_confidence": "TRADEBOT_MIN_CONFIDENCE",
    "max_order_krw": "TRADEBOT_MAX_ORDER_KRW",
    "max_position_krw": "TRADEBOT_MAX_POSITION_KRW",
    "daily_loss_limit_krw": "TRADEBOT_DAILY_LOSS_LIMIT_KRW",
    "hourly_candles": "TRADEBOT_HOURLY_CANDLES",
    "daily_candles": "TRADEBOT_DAILY_CANDLES",
    "llm_timeout_s": "TRADEBOT_LLM_TIMEOUT_S",
    "llm_max_retries": "TRADEBOT_LLM_MAX_RETRIES",
    "order_poll_timeout_s": "TRADEBOT_ORDER_POLL_TIMEOUT_S",
}

REQUIRED_HINTS = {
    "UPBIT_ACCESS_KEY": "live mode needs Upbit API keys (Upbit > My page > Open API); set UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY",
    "UPBIT_SECRET_KEY": "live mode needs Upbit API keys (Upbit > My page > Open API); set UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY",
    "ANTHROPIC_API_KEY": "the claude advisor needs an Anthropic API key; set ANTHROPIC_API_KEY or TRADEBOT_ADVISOR=rules",
}


def mask_url_password(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:****@host/db``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1****@", url)


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """Root keeps state in /var/lib/tradebot (a home directory of mode 700 would hide an embedded
    PostgreSQL's files from the ``postgres`` user it must run as); others use the XDG state directory."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/tradebot")
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local" / "state")
    return Path(base) / "tradebot"


def read_env_file(path: Path) -> dict[str, str]:
    """Values of a .env file (python-dotenv syntax); variables without a value are dropped."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(env_file: Path | None = None, environ: Mapping[str, str] | None = None, *,
                  explicit_env_file: bool = False) -> Settings:
    """Build and validate the settings.

    ``env_file``: the ``.env`` path to read; when it was given explicitly (``--env-file``) it must exist,
    otherwise (the default ``./.env``) it is read only when present.
    """
    environ = dict(os.environ if environ is None else environ)
    used_env_file: Path | None = None
    file_values: dict[str, str] = {}
    if env_file is not None:
        if env_file.is_file():
            try:
                file_values = read_env_file(env_file)
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError("--env-file", f"{env_file} cannot be read ({type(e).__name__}); check its permissions") from None
            used_env_file = env_file
        elif explicit_env_file:
            raise ConfigError("--env-file", f"{env_file} does not exist; pass the path of your env file (see .env.example)")
    merged = {**file_values, **{k: v for k, v in environ.items()}}
    return _build(merged, used_env_file)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    value = _get(env, name) or default
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(name, f"must be an http(s) URL like {default or 'https://host'}; got {value!r}")
    return value.rstrip("/")


def _decimal(env: Mapping[str, str], name: str, default: str, *, lo: Decimal | None = None,
             hi: Decimal | None = None) -> Decimal:
    raw = _get(env, name) or default
    try:
        value = Decimal(raw.replace("_", "").replace(",", ""))
    except InvalidOperation:
        raise ConfigError(name, f"must be a number, e.g. {default}; got {raw!r}") from None
    if not value.is_finite() or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ConfigError(name, f"must be {bounds}; got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number between {lo} and {hi}; got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}; got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = _get(env, name)
    value = (raw or default).lower()
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}; got {raw!r}")
    return value


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    raw = _get(env, name)
    if raw is None:
        return None
    if any(c.isspace() for c in raw):
        raise ConfigError(name, "contains whitespace; paste the key again without spaces or quotes")
    return Secret(raw)


def validate_database_url(url: str) -> str:
    """Check that ``url`` is a PostgreSQL URL psycopg can use (without connecting)."""
    parts = urlsplit(url)
    if parts.scheme.startswith("postgresql+") or parts.scheme.startswith("postgres+"):
        raise ConfigError("DATABASE_URL", f"uses the SQLAlchemy scheme {parts.scheme!r}; write postgresql://user:password@host:5432/dbname")
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL", "must look like postgresql://user:password@host:5432/dbname")
    try:
        parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise ConfigError("DATABASE_URL", "has an invalid port; write postgresql://user:password@host:5432/dbname") from None
    from psycopg.conninfo import conninfo_to_dict

    import psycopg

    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError("DATABASE_URL", "is not a valid PostgreSQL connection URL; write postgresql://user:password@host:5432/dbname") from None
    return url


def validate_ticker(ticker: str, variable: str = "TRADEBOT_TICKER") -> str:
    """Tickers are validated before any use (SQL, URLs, messages)."""
    if not TICKER_RE.match(ticker):
        raise ConfigError(variable, f"must be an Upbit market code like KRW-BTC; got {ticker!r}")
    if not ticker.startswith("KRW-"):
        raise ConfigError(variable, f"must be a KRW market (KRW-...), tradebot trades KRW markets only; got {ticker!r}")
    return ticker


def _build(env: Mapping[str, str], env_file: Path | None) -> Settings:
    database_url = _get(env, "DATABASE_URL")
    if database_url is not None:
        validate_database_url(database_url)
    anthropic_key = _secret(env, "ANTHROPIC_API_KEY")
    advisor_default = "claude" if anthropic_key else "rules"
    metrics = _get(env, "TRADEBOT_METRICS_DIR")
    state = _get(env, "TRADEBOT_STATE_DIR")
    model = _get(env, "TRADEBOT_MODEL") or DEFAULT_MODEL
    if not re.match(r"^[A-Za-z0-9._:-]{3,100}$", model):
        raise ConfigError("TRADEBOT_MODEL", f"must be an Anthropic model id like {DEFAULT_MODEL}; got {model!r}")
    chat_id = _get(env, "TELEGRAM_CHAT_ID")
    if chat_id is not None and not re.match(r"^(-?\d{1,20}|@[A-Za-z0-9_]{5,32})$", chat_id):
        raise ConfigError("TELEGRAM_CHAT_ID", f"must be a numeric chat id (e.g. 123456789 or -100...) or @channelname; got {chat_id!r}")
    return Settings(
        database_url=database_url,
        upbit_access_key=_secret(env, "UPBIT_ACCESS_KEY"),
        upbit_secret_key=_secret(env, "UPBIT_SECRET_KEY"),
        upbit_api_url=_url(env, "UPBIT_API_URL", "https://api.upbit.com") or "https://api.upbit.com",
        anthropic_api_key=anthropic_key,
        anthropic_base_url=_url(env, "ANTHROPIC_BASE_URL", None),
        model=model,
        telegram_bot_token=_secret(env, "TELEGRAM_BOT_TOKEN"),
        telegram_chat_id=chat_id,
        telegram_api_url=_url(env, "TELEGRAM_API_URL", "https://api.telegram.org") or "https://api.telegram.org",
        ticker=validate_ticker((_get(env, "TRADEBOT_TICKER") or "KRW-BTC").upper()),
        mode=_choice(env, "TRADEBOT_MODE", ("paper", "live"), "paper"),  # type: ignore[arg-type]
        metrics_dir=Path(metrics).expanduser() if metrics else None,
        state_dir=Path(state).expanduser() if state else default_state_dir(env),
        paper_krw=_decimal(env, "TRADEBOT_PAPER_KRW", "1000000", lo=Decimal(0), hi=Decimal("1e12")),
        advisor=_choice(env, "TRADEBOT_ADVISOR", ("claude", "rules"), advisor_default),  # type: ignore[arg-type]
        backtest_filter=_choice(env, "TRADEBOT_BACKTEST_FILTER", ("on", "off"), "on") == "on",
        backtest_filter_threshold=_decimal(env, "TRADEBOT_BACKTEST_FILTER_THRESHOLD", "0.02", lo=Decimal(0), hi=Decimal(1)),
        min_confidence=_decimal(env, "TRADEBOT_MIN_CONFIDENCE", "0.6", lo=Decimal(0), hi=Decimal(1)),
        max_order_krw=_decimal(env, "TRADEBOT_MAX_ORDER_KRW", "50000", lo=Decimal(0), hi=Decimal("1e9")),
        max_position_krw=_decimal(env, "TRADEBOT_MAX_POSITION_KRW", "200000", lo=Decimal(0), hi=Decimal("1e12")),
        daily_loss_limit_krw=_decimal(env, "TRADEBOT_DAILY_LOSS_LIMIT_KRW", "30000", lo=Decimal(0), hi=Decimal("1e12")),
        hourly_candles=_int(env, "TRADEBOT_HOURLY_CANDLES", 200, 60, 1000),
        daily_candles=_int(env, "TRADEBOT_DAILY_CANDLES", 30, 1, 200),
        llm_timeout_s=_decimal(env, "TRADEBOT_LLM_TIMEOUT_S", "60", lo=Decimal("0.1"), hi=Decimal(600)),
        llm_max_retries=_int(env, "TRADEBOT_LLM_MAX_RETRIES", 2, 0, 5),
        order_poll_timeout_s=_decimal(env, "TRADEBOT_ORDER_POLL_TIMEOUT_S", "10", lo=Decimal("0.5"), hi=Decimal(300)),
        env_file=env_file,
    )
