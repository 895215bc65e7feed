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
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from tradebot.errors import ConfigError
from tradebot.models import Market, plain
from tradebot.urls import check_url, mask_url_password, url_passwords, validate_database_url

DEFAULT_MODEL = "claude-sonnet-4-6"

# Bounds of every amount of KRW a user types (TRADEBOT_PAPER_KRW, `paper reset --krw`, `--starting-krw`, `pnl
# --at`): far above any real account or price, far below what Decimal arithmetic cannot handle.
MAX_KRW = Decimal("1e12")
MAX_MARKETS = 20  # TRADEBOT_MARKETS: one cycle, one model request for all of them
MIN_PRICE_KRW = Decimal("0.00000001")  # Upbit's finest KRW tick is far coarser; 0 or less is never a price
MAX_ENV_FILE_BYTES = 1_000_000
# Directories the state and metrics may not live in: kernel and device file systems, not storage.
SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
# Settings whose values are credentials (scrubbed from crash reports; masked by `config show`).
SECRET_VARIABLES = ("UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY", "ANTHROPIC_API_KEY", "TELEGRAM_BOT_TOKEN")
URL_VARIABLES = ("DATABASE_URL", "UPBIT_API_URL", "ANTHROPIC_BASE_URL", "TELEGRAM_API_URL")


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
    telegram_allowed_user_ids: frozenset[int]  # in a group chat, who may command the bot (tradebot telegram)
    telegram_allow_exit: bool  # /exit in live mode (paper: always)
    market: Market  # the first of ``markets`` (the one-market form, TRADEBOT_TICKER)
    markets: tuple[Market, ...]  # every market traded, in the configured order
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
    max_exposure_krw: Decimal  # all positions together at market value
    max_open_positions: int  # markets holding more than dust
    krw_reserve: Decimal  # KRW no buy ever spends
    hourly_candles: int
    daily_candles: int
    llm_timeout_s: Decimal
    llm_max_retries: int
    shadow_model: bool  # also ask the model in the shadow when the rules advisor acts (it costs money)
    usd_krw: Decimal  # KRW per USD, to put the model's bill beside KRW profits
    reflection: bool  # the model's prompt gets how its own recent scored decisions turned out
    digest_hour: int | None  # local hour of the daily Telegram digest (None: off)
    prompt_cache: str  # off | 5m | 1h: mark the prompt's system block for caching (only when it is read again)
    llm_daily_budget_usd: Decimal | None  # None: no cap
    llm_monthly_budget_usd: Decimal | None
    # USD per million tokens overriding the built-in table for TRADEBOT_MODEL (None: the table's price)
    model_input_usd_per_mtok: Decimal | None
    model_output_usd_per_mtok: Decimal | None
    model_cache_read_usd_per_mtok: Decimal | None
    model_cache_write_usd_per_mtok: Decimal | None
    order_poll_timeout_s: Decimal
    lock_wait_s: int  # how long a run waits for another run of the same account
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
            elif isinstance(value, (tuple, frozenset)):
                text = ",".join(str(v) for v in sorted(value)) if isinstance(value, frozenset) else ",".join(value)
            else:
                text = str(value)
            if ENV_NAMES[f.name] in URL_VARIABLES and value is not None:
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
    "telegram_allowed_user_ids": "TELEGRAM_ALLOWED_USER_IDS",
    "telegram_allow_exit": "TRADEBOT_TELEGRAM_ALLOW_EXIT",
    "market": "TRADEBOT_TICKER",
    "markets": "TRADEBOT_MARKETS",
    "mode": "TRADEBOT_MODE",
    "metrics_dir": "TRADEBOT_METRICS_DIR",
    "state_dir": "TRADEBOT_STATE_DIR",
    "paper_krw": "TRADEBOT_PAPER_KRW",
    "advisor": "TRADEBOT_ADVISOR",
    "backtest_filter": "TRADEBOT_BACKTEST_FILTER",
    "shadow_model": "TRADEBOT_SHADOW_MODEL",
    "usd_krw": "TRADEBOT_USD_KRW",
    "reflection": "TRADEBOT_REFLECTION",
    "digest_hour": "TRADEBOT_DIGEST_HOUR",
    "prompt_cache": "TRADEBOT_PROMPT_CACHE",
    "llm_daily_budget_usd": "TRADEBOT_LLM_DAILY_BUDGET_USD",
    "llm_monthly_budget_usd": "TRADEBOT_LLM_MONTHLY_BUDGET_USD",
    "model_input_usd_per_mtok": "TRADEBOT_MODEL_INPUT_USD_PER_MTOK",
    "model_output_usd_per_mtok": "TRADEBOT_MODEL_OUTPUT_USD_PER_MTOK",
    "model_cache_read_usd_per_mtok": "TRADEBOT_MODEL_CACHE_READ_USD_PER_MTOK",
    "model_cache_write_usd_per_mtok": "TRADEBOT_MODEL_CACHE_WRITE_USD_PER_MTOK",
    "backtest_filter_threshold": "TRADEBOT_BACKTEST_FILTER_THRESHOLD",
    "min_confidence": "TRADEBOT_MIN_CONFIDENCE",
    "max_order_krw": "TRADEBOT_MAX_ORDER_KRW",
    "max_position_krw": "TRADEBOT_MAX_POSITION_KRW",
    "daily_loss_limit_krw": "TRADEBOT_DAILY_LOSS_LIMIT_KRW",
    "max_exposure_krw": "TRADEBOT_MAX_EXPOSURE_KRW",
    "max_open_positions": "TRADEBOT_MAX_OPEN_POSITIONS",
    "krw_reserve": "TRADEBOT_KRW_RESERVE",
    "hourly_candles": "TRADEBOT_HOURLY_CANDLES",
    "daily_candles": "TRADEBOT_DAILY_CANDLES",
    "llm_timeout_s": "TRADEBOT_LLM_TIMEOUT_S",
    "llm_max_retries": "TRADEBOT_LLM_MAX_RETRIES",
    "order_poll_timeout_s": "TRADEBOT_ORDER_POLL_TIMEOUT_S",
    "lock_wait_s": "TRADEBOT_LOCK_WAIT_S",
}

REQUIRED_HINTS = {
    "UPBIT_ACCESS_KEY": "live mode needs Upbit API keys (Upbit > My page > Open API); set UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY",
    "UPBIT_SECRET_KEY": "live mode needs Upbit API keys (Upbit > My page > Open API); set UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY",
    "ANTHROPIC_API_KEY": "the claude advisor needs an Anthropic API key; set ANTHROPIC_API_KEY or TRADEBOT_ADVISOR=rules",
}


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Every credential in ``env`` (the process environment merged with the env file): the secret settings
    and the passwords in the URL settings."""
    values = [env[name].strip() for name in SECRET_VARIABLES if env.get(name)]
    for name in URL_VARIABLES:
        if env.get(name):
            values += url_passwords(env[name].strip())
    return [v for v in values if v]


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """Root keeps state in /var/lib/tradebot (a home directory of mode 700 would hide an embedded
    PostgreSQL's files from the ``postgres`` user it must run as); others use the XDG state directory
    (``XDG_STATE_HOME`` when it is absolute, as the XDG spec requires, else ``~/.local/state``)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/tradebot")
    xdg = environ.get("XDG_STATE_HOME") or ""
    if xdg.startswith("/"):
        return Path(xdg) / "tradebot"
    return Path(environ.get("HOME") or "~").expanduser() / ".local" / "state" / "tradebot"


def state_dir_candidates(env: Mapping[str, str]) -> list[Path]:
    """Where a file of the state directory may go, without raising: TRADEBOT_STATE_DIR when it is set and
    valid, else the default. (For the crash report, which must not fail itself; empty when neither is
    usable.)"""
    candidates: tuple[Callable[[], Path | None], ...] = (
        lambda: _directory(env, "TRADEBOT_STATE_DIR", file_ok=False),
        lambda: _check_directory(default_state_dir(env), "TRADEBOT_STATE_DIR", "", file_ok=False))
    for make in candidates:
        try:
            path = make()
        except (ConfigError, RuntimeError, OSError, ValueError):
            continue
        if path is not None:
            return [path]
    return []


def _shown(path: Path | str) -> str:
    """A path as it can be printed on one line: as is, or quoted when it has odd characters."""
    text = str(path)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def read_env_file(path: Path) -> dict[str, str]:
    """Values of an env file (python-dotenv syntax); variables without a value are dropped.

    The file must be UTF-8 text of at most 1 MB: a binary file or a device that never ends (``/dev/zero``)
    is a ConfigError, an empty one (``/dev/null``) gives no values.
    """
    import io

    from dotenv import dotenv_values

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ENV_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError("--env-file", f"{_shown(path)} cannot be read ({e.strerror or type(e).__name__}); "
                          "check that it is a file this user may read") from None
    if len(data) > MAX_ENV_FILE_BYTES:
        raise ConfigError("--env-file", f"{_shown(path)} is larger than 1 MB, so it is not an env file; pass the "
                          "path of your env file (see .env.example)")
    try:
        if b"\0" in data:
            raise UnicodeError("NUL byte")
        text = data.decode("utf-8")
    except UnicodeError:
        raise ConfigError("--env-file", f"{_shown(path)} is not a text file (it is not UTF-8 text); pass the path "
                          "of your env file (see .env.example)") from None
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def load_settings(env_file: Path | None = None, environ: Mapping[str, str] | None = None, *,
                  explicit_env_file: bool = False) -> Settings:
    """Build and validate the settings.

    ``env_file``: the ``.env`` path to read; when it was given explicitly (``--env-file``) it must exist
    (a character device or a pipe is read too: ``/dev/null`` is an empty file), otherwise (the default
    ``./.env``) it is read only when it is a regular file.
    """
    environ = dict(os.environ if environ is None else environ)
    used_env_file: Path | None = None
    file_values: dict[str, str] = {}
    if env_file is not None:
        try:
            mode: int | None = env_file.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = None
        except (OSError, ValueError) as e:
            raise ConfigError("--env-file", f"{_shown(env_file)} cannot be read "
                              f"({getattr(e, 'strerror', None) or type(e).__name__}); check its path and permissions") from None
        if mode is None:
            if explicit_env_file:
                raise ConfigError("--env-file", f"{_shown(env_file)} does not exist; pass the path of your env file "
                                  "(see .env.example)")
        elif stat.S_ISDIR(mode):
            if explicit_env_file:
                raise ConfigError("--env-file", f"{_shown(env_file)} is a directory; pass the path of your env file")
        elif stat.S_ISREG(mode) or explicit_env_file:
            file_values = read_env_file(env_file)
            used_env_file = env_file
    merged = {**file_values, **{k: v for k, v in environ.items()}}
    return _build(merged, used_env_file)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    if any("\udc80" <= c <= "\udcff" for c in value):
        # Bytes that are not UTF-8 (Python keeps them as lone surrogates): printing them would fail later.
        raise ConfigError(name, "is not valid UTF-8 text; write it again in plain text")
    value = value.strip()
    return value or None


def _url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    value = _get(env, name) or default
    if value is None:
        return None
    return check_url(value, name, default or "https://host").rstrip("/")


NOT_A_NUMBER = "it is not a number"
_THOUSANDS = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,3}(?:_[0-9]{3})+"
NUMBER_RE = re.compile(rf"[+-]?(?:(?:[0-9]+|{_THOUSANDS})(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_number(text: str) -> Decimal:
    """A finite Decimal from what a user typed, or ValueError saying what is wrong.

    ASCII digits only, with an optional sign, decimal point and exponent (``1e6``); thousands separators
    (``,`` or ``_``, not mixed) only between groups of exactly three digits before the point: ``50,000`` and
    ``1,000,000.5`` are read, ``1,2,3`` and ``12,34`` are refused rather than read as 123 and 1234. Every
    number of a setting or a command-line option is read by this function.
    """
    s = text.strip()
    if not s:
        raise ValueError("it is empty")
    if len(s) > 100:
        raise ValueError("it is too long to be a number")
    if not NUMBER_RE.fullmatch(s):
        if any(c.isdigit() and not c.isascii() for c in s):
            raise ValueError("only ASCII digits 0-9 are accepted")
        if ("," in s or "_" in s) and NUMBER_RE.fullmatch(s.replace(",", "").replace("_", "")):
            raise ValueError("thousands separators must separate groups of three digits, like 50,000")
        raise ValueError(NOT_A_NUMBER)
    try:
        return Decimal(s.replace(",", "").replace("_", ""))
    except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
        raise ValueError(NOT_A_NUMBER) from None


def number_hint(error: ValueError) -> str:
    """`` (why)`` for a message about a number :func:`parse_number` refused, or nothing when it simply was
    not a number."""
    return "" if str(error) == NOT_A_NUMBER else f" ({error})"


def _decimal(env: Mapping[str, str], name: str, default: str, *, lo: Decimal | None = None,
             hi: Decimal | None = None) -> Decimal:
    raw = _get(env, name) or default
    try:
        value = parse_number(raw)
    except ValueError as e:
        raise ConfigError(name, f"must be a number, e.g. {default}; got {raw!r}{number_hint(e)}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ConfigError(name, f"must be {bounds}; got {raw!r}")
    return value


def _optional_decimal(env: Mapping[str, str], name: str, example: str) -> Decimal | None:
    """A non-negative amount of USD, or None when unset (``example`` is shown in the error)."""
    if _get(env, name) is None:
        return None
    return _decimal(env, name, example, lo=Decimal(0), hi=Decimal(1_000_000))


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = parse_number(raw)
    except ValueError as e:
        raise ConfigError(name, f"must be a whole number between {lo} and {hi}; got {raw!r}{number_hint(e)}") from None
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}; got {raw!r}")
    if value != value.to_integral_value():
        raise ConfigError(name, f"must be a whole number between {lo} and {hi}; got {raw!r}")
    return int(value)


_EXAMPLE_DIRS = {"TRADEBOT_METRICS_DIR": "/var/lib/prometheus/node-exporter"}


def _directory(env: Mapping[str, str], name: str, *, file_ok: bool) -> Path | None:
    """An absolute directory path from ``name``, or None when it is not set (see :func:`_check_directory`)."""
    raw = _get(env, name)
    if raw is None:
        return None
    if not raw.isprintable():
        raise ConfigError(name, f"contains control characters; got {raw!r}")
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # ~user of an unknown user, or ~ without a home directory
        user = raw[1:].split("/", 1)[0]
        whose = f"user {user!r} has no home directory here" if user else "this user has no home directory (HOME)"
        raise ConfigError(name, f"starts with ~ but {whose}; write the absolute path, e.g. {_EXAMPLE_DIRS.get(name, '/var/lib/tradebot')}; got {raw!r}") from None
    return _check_directory(path, name, raw, file_ok=file_ok)


def _check_directory(path: Path, name: str, raw: str, *, file_ok: bool) -> Path:
    """``path`` must be absolute, must not point into /proc, /sys or /dev (also through a symlink), and —
    unless ``file_ok`` (metrics: a failure there is a runtime warning, never a stop) — must not be an existing
    non-directory. A directory that does not exist yet is fine: it is created when first needed."""
    got = f"; got {raw!r}" if raw else f" (default {_shown(path)} from HOME/XDG_STATE_HOME)"
    if not path.is_absolute():
        raise ConfigError(name, "must be an absolute path, not one relative to the working directory (where the "
                          f"data would go depends on where tradebot is started); e.g. {_EXAMPLE_DIRS.get(name, '/var/lib/tradebot')}{got}")
    for candidate in (Path(os.path.normpath(path)), Path(os.path.realpath(path))):
        for root in SYSTEM_ROOTS:
            if candidate == root or root in candidate.parents:
                raise ConfigError(name, f"points into {root}, a kernel or device file system, not storage; "
                                  f"choose a directory on disk, e.g. {_EXAMPLE_DIRS.get(name, '/var/lib/tradebot')}{got}")
    if not file_ok:
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            raise ConfigError(name, f"is inside a file, not a directory; set it to a directory, e.g. "
                              f"/var/lib/tradebot{got}") from None
        except OSError as e:
            raise ConfigError(name, f"cannot be checked ({e.strerror or type(e).__name__}); choose a directory this "
                              f"user can reach{got}") from None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise ConfigError(name, f"is not a directory ({_shown(path)} is a file); set it to a directory, e.g. "
                              f"/var/lib/tradebot{got}")
    return path


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
    if not (raw.isascii() and raw.isprintable()):
        # Keys travel in HTTP headers and URLs: anything else is a paste accident, and fails deep in a client.
        raise ConfigError(name, "contains characters that are not printable ASCII; paste the key again")
    return Secret(raw)


def parse_market(text: str, variable: str = "TRADEBOT_TICKER") -> Market:
    """The one place a market code from the user is checked (settings and every ``--market``/``--symbol``
    option): ConfigError naming ``variable`` when it is not an Upbit KRW market."""
    try:
        return Market.parse(text)
    except ValueError as e:
        raise ConfigError(variable, str(e)) from None


def parse_markets(markets: str | None, ticker: str | None) -> tuple[Market, ...]:
    """The markets to trade: ``TRADEBOT_MARKETS`` (comma-separated, order kept), else ``TRADEBOT_TICKER``'s one,
    else KRW-BTC. Empty items, bad names, duplicates, more than 20 markets, or a ``TRADEBOT_TICKER`` that is not
    the same one market are ConfigErrors naming the variable."""
    one = parse_market(ticker) if ticker is not None else None
    if markets is None:
        return (one or Market("KRW-BTC"),)
    items = [item.strip() for item in markets.split(",")]
    if any(not item for item in items):
        raise ConfigError("TRADEBOT_MARKETS", f"has an empty item; write markets separated by commas, e.g. "
                          f"KRW-BTC,KRW-ETH; got {markets!r}")
    parsed = [parse_market(item, "TRADEBOT_MARKETS") for item in items]
    seen: set[Market] = set()
    for m in parsed:
        if m in seen:
            raise ConfigError("TRADEBOT_MARKETS", f"lists {m} twice; each market once")
        seen.add(m)
    if len(parsed) > MAX_MARKETS:
        raise ConfigError("TRADEBOT_MARKETS", f"lists {len(parsed)} markets; at most {MAX_MARKETS}")
    if one is not None and (one,) != tuple(parsed):
        raise ConfigError("TRADEBOT_MARKETS", f"and TRADEBOT_TICKER ({one}) disagree: set TRADEBOT_MARKETS only "
                          "(leave TRADEBOT_TICKER empty), or TRADEBOT_TICKER alone for one market")
    return tuple(parsed)


def _user_ids(raw: str | None) -> frozenset[int]:
    """TELEGRAM_ALLOWED_USER_IDS: Telegram user ids separated by commas (empty: nobody in a group chat)."""
    items = [x.strip() for x in (raw or "").split(",") if x.strip()]
    if not all(re.fullmatch(r"[0-9]{1,20}", x) for x in items):
        raise ConfigError("TELEGRAM_ALLOWED_USER_IDS", f"must be numeric Telegram user ids separated by commas "
                          f"(e.g. 123456789,987654321); got {raw!r}")
    return frozenset(int(x) for x in items)


def _build(env: Mapping[str, str], env_file: Path | None) -> Settings:
    database_url = _get(env, "DATABASE_URL")
    if database_url is not None:
        validate_database_url(database_url)
    anthropic_key = _secret(env, "ANTHROPIC_API_KEY")
    advisor_default = "claude" if anthropic_key else "rules"
    metrics = _directory(env, "TRADEBOT_METRICS_DIR", file_ok=True)
    state = _directory(env, "TRADEBOT_STATE_DIR", file_ok=False)
    if state is None:
        try:
            state = _check_directory(default_state_dir(env), "TRADEBOT_STATE_DIR", "", file_ok=False)
        except RuntimeError:
            raise ConfigError("TRADEBOT_STATE_DIR", "is not set and this user has no home directory (HOME); set it "
                              "to an absolute path, e.g. /var/lib/tradebot") from None
    model = _get(env, "TRADEBOT_MODEL") or DEFAULT_MODEL
    if not re.fullmatch(r"[A-Za-z0-9._:-]{3,100}", model):
        raise ConfigError("TRADEBOT_MODEL", f"must be an Anthropic model id like {DEFAULT_MODEL}; got {model!r}")
    chat_id = _get(env, "TELEGRAM_CHAT_ID")
    if chat_id is not None and not re.fullmatch(r"-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32}", chat_id):
        raise ConfigError("TELEGRAM_CHAT_ID", f"must be a numeric chat id (e.g. 123456789 or -100...) or @channelname; got {chat_id!r}")
    markets = parse_markets(_get(env, "TRADEBOT_MARKETS"), _get(env, "TRADEBOT_TICKER"))
    max_position = _decimal(env, "TRADEBOT_MAX_POSITION_KRW", "200000", lo=Decimal(0), hi=Decimal("1e12"))
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
        telegram_allowed_user_ids=_user_ids(_get(env, "TELEGRAM_ALLOWED_USER_IDS")),
        telegram_allow_exit=_choice(env, "TRADEBOT_TELEGRAM_ALLOW_EXIT", ("yes", "no"), "no") == "yes",
        market=markets[0],
        markets=markets,
        mode=_choice(env, "TRADEBOT_MODE", ("paper", "live"), "paper"),  # type: ignore[arg-type]
        metrics_dir=metrics,
        state_dir=state,
        paper_krw=_decimal(env, "TRADEBOT_PAPER_KRW", "1000000", lo=Decimal(0), hi=MAX_KRW),
        advisor=_choice(env, "TRADEBOT_ADVISOR", ("claude", "rules"), advisor_default),  # type: ignore[arg-type]
        backtest_filter=_choice(env, "TRADEBOT_BACKTEST_FILTER", ("on", "off"), "on") == "on",
        backtest_filter_threshold=_decimal(env, "TRADEBOT_BACKTEST_FILTER_THRESHOLD", "0.02", lo=Decimal(0), hi=Decimal(1)),
        min_confidence=_decimal(env, "TRADEBOT_MIN_CONFIDENCE", "0.6", lo=Decimal(0), hi=Decimal(1)),
        max_order_krw=_decimal(env, "TRADEBOT_MAX_ORDER_KRW", "50000", lo=Decimal(0), hi=Decimal("1e9")),
        max_position_krw=max_position,
        daily_loss_limit_krw=_decimal(env, "TRADEBOT_DAILY_LOSS_LIMIT_KRW", "30000", lo=Decimal(0), hi=Decimal("1e12")),
        max_exposure_krw=_decimal(env, "TRADEBOT_MAX_EXPOSURE_KRW", plain(max_position * len(markets)), lo=Decimal(0),
                                  hi=MAX_KRW),
        max_open_positions=_int(env, "TRADEBOT_MAX_OPEN_POSITIONS", len(markets), 1, MAX_MARKETS),
        krw_reserve=_decimal(env, "TRADEBOT_KRW_RESERVE", "0", lo=Decimal(0), hi=MAX_KRW),
        hourly_candles=_int(env, "TRADEBOT_HOURLY_CANDLES", 200, 60, 1000),
        daily_candles=_int(env, "TRADEBOT_DAILY_CANDLES", 30, 1, 200),
        llm_timeout_s=_decimal(env, "TRADEBOT_LLM_TIMEOUT_S", "60", lo=Decimal("0.1"), hi=Decimal(600)),
        llm_max_retries=_int(env, "TRADEBOT_LLM_MAX_RETRIES", 2, 0, 5),
        shadow_model=_choice(env, "TRADEBOT_SHADOW_MODEL", ("on", "off"), "off") == "on",
        usd_krw=_decimal(env, "TRADEBOT_USD_KRW", "1400", lo=Decimal(1), hi=Decimal(100_000)),
        reflection=_choice(env, "TRADEBOT_REFLECTION", ("on", "off"), "off") == "on",
        digest_hour=_int(env, "TRADEBOT_DIGEST_HOUR", -1, 0, 23) if _get(env, "TRADEBOT_DIGEST_HOUR") else None,
        prompt_cache=_choice(env, "TRADEBOT_PROMPT_CACHE", ("off", "5m", "1h"), "off"),
        llm_daily_budget_usd=_optional_decimal(env, "TRADEBOT_LLM_DAILY_BUDGET_USD", "5"),
        llm_monthly_budget_usd=_optional_decimal(env, "TRADEBOT_LLM_MONTHLY_BUDGET_USD", "100"),
        model_input_usd_per_mtok=_optional_decimal(env, "TRADEBOT_MODEL_INPUT_USD_PER_MTOK", "3"),
        model_output_usd_per_mtok=_optional_decimal(env, "TRADEBOT_MODEL_OUTPUT_USD_PER_MTOK", "15"),
        model_cache_read_usd_per_mtok=_optional_decimal(env, "TRADEBOT_MODEL_CACHE_READ_USD_PER_MTOK", "0.3"),
        model_cache_write_usd_per_mtok=_optional_decimal(env, "TRADEBOT_MODEL_CACHE_WRITE_USD_PER_MTOK", "3.75"),
        order_poll_timeout_s=_decimal(env, "TRADEBOT_ORDER_POLL_TIMEOUT_S", "10", lo=Decimal("0.5"), hi=Decimal(300)),
        lock_wait_s=_int(env, "TRADEBOT_LOCK_WAIT_S", 120, 0, 3600),
        env_file=env_file,
    )
