"""Option values: parsers that give a clear usage error (exit 2), the choices, and the options several
commands declare alike (so their help and their checks cannot drift apart).

Every number is read by :func:`tradebot.config.parse_number`, like every setting: ASCII digits, thousands
separators only between groups of three (``50,000``).
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tradebot.errors import TradebotError

if TYPE_CHECKING:
    from tradebot.models import Market


class Side(str, Enum):
    buy = "buy"
    sell = "sell"


class Status(str, Enum):
    pending = "pending"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    unknown = "unknown"


class ModeOpt(str, Enum):
    paper = "paper"
    live = "live"


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class OutputFormat(str, Enum):
    """Formats of reports that are not tables of rows (``backtest``)."""

    table = "table"
    json = "json"


class By(str, Enum):
    day = "day"
    week = "week"
    month = "month"


FormatOption = Annotated[Format, typer.Option("--format", help="table, json or csv (exact decimals in json/csv).")]
UntilOption = Annotated[str | None, typer.Option(help="Up to this date (inclusive) or ISO timestamp (exclusive).")]
InstallPostgresOption = Annotated[bool, typer.Option(
    "--install-postgres",
    help="If the PostgreSQL server binaries are missing, install Debian's postgresql package (root only).")]


def parse_when(value: str | None, option: str, *, end_of_day: bool = False) -> datetime | None:
    """A date (``2026-11-01``) or ISO timestamp, as UTC; naive values are UTC. With ``end_of_day`` (an upper
    bound, ``--until``) a bare date means the end of that day.

    Far dates work: an upper bound past the last time Python can hold (``--until 9999-12-31``) is no bound
    at all (None); a time before year 1 once in UTC (``0001-01-01T00:00+01:00``) becomes the first one, and
    a lower bound past the last one the last one.
    """
    if value is None:
        return None
    text = value.strip()
    bare = len(text) == 10
    try:
        if bare:
            ts = datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        else:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{_quoted(value)} is not a date (YYYY-MM-DD) or ISO timestamp", param_hint=option) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    try:
        ts = ts.astimezone(UTC)
        if bare and end_of_day:
            ts += timedelta(days=1)
    except OverflowError:
        if ts.year < 5000:
            return datetime.min.replace(tzinfo=UTC)
        return None if end_of_day else datetime.max.replace(tzinfo=UTC)
    return ts


def _quoted(text: str) -> str:
    """An option value for a message: quoted, on one line, and short."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def positive_decimal(text: str, option: str, what: str, *, lo: Decimal | None = None,
                     hi: Decimal | None = None) -> Decimal:
    """A positive Decimal from an option value, within ``lo``..``hi`` when given, or a usage error."""
    from tradebot.config import number_hint, parse_number

    try:
        value = parse_number(text)
    except ValueError as e:
        raise typer.BadParameter(f"{_quoted(text)} is not a positive {what}{number_hint(e)}", param_hint=option) from None
    if value <= 0:
        raise typer.BadParameter(f"{_quoted(text)} is not a positive {what}", param_hint=option)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"from {lo:,f} to {hi:,f}" if lo is not None else f"more than 0 and at most {hi:,f}"
        raise typer.BadParameter(f"{_quoted(text)} is out of range: the {what} must be {bounds}", param_hint=option)
    return value


def whole_number(lo: int, hi: int) -> Callable[[Any], int]:
    """A Typer ``parser`` for a whole-number option from ``lo`` to ``hi`` (Typer's own int accepts ``1_0``
    as 10)."""

    def parse(value: Any) -> int:
        if isinstance(value, int):  # the default
            return value
        from tradebot.config import number_hint, parse_number

        try:
            number = parse_number(value)
        except ValueError as e:
            raise typer.BadParameter(f"{_quoted(value)} is not a whole number{number_hint(e)}") from None
        if not lo <= number <= hi or number != number.to_integral_value():
            raise typer.BadParameter(f"{_quoted(value)} is not a whole number from {lo:,} to {hi:,}")
        return int(number)

    return parse


def market_option(text: str, option: str) -> "Market":
    """The market named by ``option`` (``--symbol``, ``--market``), validated like TRADEBOT_TICKER."""
    from tradebot.config import parse_market

    try:
        return parse_market(text, option)
    except TradebotError as e:
        raise typer.BadParameter(str(e).removeprefix(f"{option} "), param_hint=option) from None


def krw_amount(text: str, option: str) -> Decimal:
    """An amount of KRW from 0 to 1,000,000,000,000 (the bounds of TRADEBOT_PAPER_KRW), or a usage error."""
    from tradebot.config import MAX_KRW, number_hint, parse_number

    try:
        value = parse_number(text)
    except ValueError as e:
        raise typer.BadParameter(f"{_quoted(text)} is not an amount of KRW{number_hint(e)}", param_hint=option) from None
    if not 0 <= value <= MAX_KRW:
        raise typer.BadParameter(f"{_quoted(text)} is out of range: it must be from 0 to {MAX_KRW:,f} KRW", param_hint=option)
    return value
