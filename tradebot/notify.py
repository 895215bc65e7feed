"""Telegram notifications: a small Bot API client and the HTML message builders.

Notifier failures raise ``NotifierError``; the caller logs them and carries on (a notification never fails a
cycle). Messages never contain the bot token: ``requests`` puts the full URL, and so the token, into its
exception texts, so errors are rebuilt from the exception class name and Telegram's ``description``, and
the original exception is not chained (``from None``) so a logged traceback cannot show it either.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tradebot.errors import NotifierError, scrub
from tradebot.models import plain

if TYPE_CHECKING:
    import requests

    from tradebot.models import Fill

TELEGRAM_API_URL = "https://api.telegram.org"
MAX_MESSAGE_CHARS = 4096  # Telegram's limit (after entity parsing; we measure the raw HTML, which is longer)
MAX_RETRY_AFTER_S = 30.0
REASON_CHARS = 200
ERROR_CHARS = 1000


class NullNotifier:
    """A notifier that drops every message (Telegram not configured)."""

    def send(self, text_html: str) -> None:
        return None


# ------------------------------------------------------------------------------------------ splitting
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*>")


def _units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def _track(stack: list[tuple[str, str]], piece: str) -> list[tuple[str, str]]:
    """The open-tag stack after ``piece`` (each entry: name, full opening tag)."""
    stack = list(stack)
    for m in _TAG.finditer(piece):
        name = m.group(2).lower()
        if m.group(1):
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == name:
                    del stack[i:]
                    break
        else:
            stack.append((name, m.group(0)))
    return stack


def _closers(stack: list[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _safe_cut(line: str, limit: int) -> int:
    """A cut position ≤ ``limit`` that is not inside a tag or an entity, preferring whitespace."""
    cut = limit
    space = line.rfind(" ", limit // 2, limit)
    if space > 0:
        cut = space + 1
    lt, gt = line.rfind("<", 0, cut), line.rfind(">", 0, cut)
    if lt > gt:  # inside a tag
        cut = lt
    amp, semi = line.rfind("&", 0, cut), line.rfind(";", 0, cut)
    if amp > semi and cut - amp <= 10:  # inside an entity such as &amp;
        cut = amp
    return max(cut, 1)


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split HTML ``text`` into messages of at most ``limit`` characters, at line breaks.

    A line longer than a message is cut at a space (never inside a tag or an entity). Tags open at a cut
    are closed at the end of one part and reopened at the start of the next, so each part parses on its own.
    """
    if _units(text) <= limit:
        return [text]
    piece_max = max(limit - 256, limit // 2)  # room for closing and reopening tags
    pieces: list[str] = []
    lines = text.split("\n")
    for n, line in enumerate(lines):
        line = line + ("\n" if n < len(lines) - 1 else "")
        while _units(line) > piece_max:
            cut = _safe_cut(line, piece_max)
            while _units(line[:cut]) > piece_max:  # astral characters count twice
                cut -= 1
            pieces.append(line[:cut])
            line = line[cut:]
        pieces.append(line)

    parts: list[str] = []
    current = ""
    stack: list[tuple[str, str]] = []
    opened_with = ""
    for piece in pieces:
        after = _track(stack, piece)
        if current != opened_with and _units(current + piece + _closers(after)) > limit:
            parts.append(current.rstrip("\n") + _closers(stack))
            opened_with = "".join(tag for _, tag in stack)
            current = opened_with
        current += piece
        stack = after
    parts.append(current.rstrip("\n") + _closers(stack))
    return [p for p in parts if p.strip()]


# ------------------------------------------------------------------------------------------- the client
class BotClient:
    """What every Bot API client here shares: the token kept out of ``repr`` and error texts, the session."""

    def __init__(self, token: str, api_url: str, session: requests.Session | None,
                 sleep: Callable[[float], None]) -> None:
        self._token = token
        self.api_url = api_url.rstrip("/")
        if session is None:
            import requests  # lazy: keeps `import tradebot.notify` cheap

            session = requests.Session()
        self._session = session
        self._sleep = sleep

    @property
    def _host(self) -> str:
        return urlsplit(self.api_url).netloc or self.api_url

    def _clean(self, text: str) -> str:
        """``text`` without the token, on one line, at most 300 characters."""
        return " ".join(str(text).replace(self._token, "***").split())[:300]

    @staticmethod
    def _body(resp: Any) -> dict[str, Any]:
        """The answer's JSON object ({} when it is not one: a proxy's HTML error page)."""
        try:
            body: Any = resp.json()
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _retry_after(body: dict[str, Any], headers: Any) -> float:
        params = body.get("parameters")
        value: Any = params.get("retry_after") if isinstance(params, dict) else None
        if value is None:
            value = headers.get("Retry-After")
        try:
            wait = float(value)
        except (TypeError, ValueError):
            wait = 1.0
        if not wait >= 0:  # NaN or negative
            wait = 1.0
        return min(wait, MAX_RETRY_AFTER_S)


class TelegramNotifier(BotClient):
    """Sends HTML messages to one chat through the Bot API (or a self-hosted Bot API server)."""

    def __init__(self, token: str, chat_id: str, api_url: str = TELEGRAM_API_URL, *,
                 timeout: float | tuple[float, float] = (3.05, 10), session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not token:
            raise ValueError("Telegram token is empty")
        if not str(chat_id):
            raise ValueError("Telegram chat id is empty")
        super().__init__(token, api_url, session, sleep)
        self.chat_id = str(chat_id)
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the token
        return f"TelegramNotifier(chat_id={self.chat_id!r}, api_url={self.api_url!r})"

    def check(self) -> str:
        """Verify the token with ``getMe`` (sends no message); returns the bot's ``@username``.

        Raises ``NotifierError`` (without the token) when Telegram is unreachable or rejects the token.
        """
        import requests

        try:
            resp = self._session.get(f"{self.api_url}/bot{self._token}/getMe", timeout=self.timeout)
        except requests.RequestException as e:
            # Not chained: the requests exception's text contains the URL with the token.
            raise NotifierError(f"cannot reach Telegram at {self._host}: {type(e).__name__}") from None
        body = self._body(resp)
        if resp.status_code == 401:
            raise NotifierError("Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized)")
        result = body.get("result")
        if resp.status_code != 200 or body.get("ok") is not True or not isinstance(result, dict):
            description = body.get("description") or resp.reason or "no description"
            raise NotifierError(self._clean(f"Telegram getMe failed at {self._host}: HTTP {resp.status_code} {description}"))
        username = result.get("username")
        if not isinstance(username, str) or not username:
            raise NotifierError(f"Telegram getMe at {self._host} returned no bot username")
        return "@" + self._clean(username)

    def send(self, text_html: str) -> None:
        """Send ``text_html`` (parse mode HTML), split into several messages when longer than 4,096 chars.

        On 429 waits Telegram's ``retry_after`` (at most 30 s) and retries once; never retries other errors.
        Raises ``NotifierError`` (without the token) when a part could not be delivered.
        """
        for part in split_message(text_html):
            self._send_one(part)

    def _send_one(self, text: str) -> None:
        import requests

        url = f"{self.api_url}/bot{self._token}/sendMessage"
        payload: dict[str, Any] = {"chat_id": self.chat_id, "text": text, "parse_mode": "HTML",
                                   "disable_web_page_preview": True}
        for attempt in (1, 2):
            try:
                resp = self._session.post(url, json=payload, timeout=self.timeout)
            except requests.RequestException as e:
                # Not chained: the requests exception's text contains the URL with the token.
                raise NotifierError(f"Telegram sendMessage failed: {type(e).__name__} ({self._host})") from None
            body = self._body(resp)
            if resp.status_code == 200 and body.get("ok") is True:
                return
            if resp.status_code == 429 and attempt == 1:
                self._sleep(self._retry_after(body, resp.headers))
                continue
            description = body.get("description") or resp.reason or "no description"
            raise NotifierError(self._clean(f"Telegram sendMessage failed: HTTP {resp.status_code} {description}"))

# --------------------------------------------------------------------------------------------- messages
def _e(value: object) -> str:
    return html.escape(str(value), quote=False)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def format_krw(value: Decimal) -> str:
    """KRW with thousands separators: 2 decimals at most (8 below 1 KRW), trailing zeros dropped."""
    places = Decimal("0.01") if abs(value) >= 1 else Decimal("0.00000001")
    text = f"{value.quantize(places, rounding=ROUND_HALF_EVEN):,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def trade_message(side: str, market: str, mode: str, volume: Decimal, avg_price: Decimal, total: Decimal,
                  fee: Decimal, reason: str, status: str) -> str:
    """An HTML message for one order: side, market, mode, status, volume, average price, total KRW, fee
    and the first 200 characters of the reason. Every value is escaped."""
    coin = market.split("-", 1)[1] if "-" in market else ""
    icon = {"buy": "🟢", "sell": "🔴"}.get(side.lower(), "•")
    lines = [
        f"{icon} <b>{_e(side.upper())} {_e(market)}</b> [{_e(mode.upper())}]",
        f"Status: {_e(status)}",
        f"Volume: {_e(plain(volume))}{' ' + _e(coin) if coin else ''}",
        f"Avg price: {_e(format_krw(avg_price))} KRW",
        f"Total: {_e(format_krw(total))} KRW",
        f"Fee: {_e(format_krw(fee))} KRW",
    ]
    if reason and reason.strip():
        lines.append(f"Reason: {_e(_short(reason, REASON_CHARS))}")
    return "\n".join(lines)


def failure_message(step: str, error: str, market: str | None = None, mode: str | None = None) -> str:
    """An HTML alert for a failed step (``error`` is shortened to 1,000 characters). Every value is escaped."""
    where = " ".join(x for x in (_e(market) if market else "", f"[{_e(mode.upper())}]" if mode else "") if x)
    lines = [f"⚠️ <b>tradebot: {_e(step)} failed</b>"]
    if where:
        lines.append(where)
    lines.append(f"<code>{_e(_short(scrub(error), ERROR_CHARS))}</code>")  # errors from outside TradebotError too
    return "\n".join(lines)


def portfolio_message(mode: str, fills: Sequence[tuple[str, Fill, str, str]],
                      failures: Sequence[tuple[str, str, str]]) -> str:
    """One HTML message for a portfolio cycle: each market's fill (side, volume, average price, total, fee,
    the reason's first 200 characters) as ``(market, fill, status, reason)``, then each market's failure as
    ``(market, step, error)``. Every value is escaped."""
    head = f"{len(fills)} trade{'' if len(fills) == 1 else 's'}"
    if failures:
        head += f", {len(failures)} failure{'' if len(failures) == 1 else 's'}"
    lines = [f"📊 <b>tradebot cycle</b> [{_e(mode.upper())}]: {head}"]
    for market, f, status, reason in fills:
        coin = market.split("-", 1)[1] if "-" in market else ""
        icon = {"buy": "🟢", "sell": "🔴"}.get(f.side, "•")
        lines.append(f"{icon} <b>{_e(f.side.upper())} {_e(market)}</b> {_e(plain(f.volume))} {_e(coin)} @ "
                     f"{_e(format_krw(f.avg_price))} KRW = {_e(format_krw(f.gross))} KRW, fee {_e(format_krw(f.fee))} KRW"
                     + (f" ({_e(status)})" if status != "completed" else ""))
        if reason and reason.strip():
            lines.append(f"Reason: {_e(_short(reason, REASON_CHARS))}")
    for market, step, error in failures:
        lines.append(f"⚠️ <b>{_e(market)}</b>: {_e(step)} failed: <code>{_e(_short(scrub(error), ERROR_CHARS // 3))}</code>")
    return "\n".join(lines)
