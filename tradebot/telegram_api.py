"""The Bot API calls Telegram control makes (``getMe``, ``getUpdates``, ``sendMessage``, ``editMessageText``,
``answerCallbackQuery``), with bounded retries.

The token is part of every URL, and ``requests`` puts the URL into its exception texts: errors are rebuilt
from the exception's class name and Telegram's ``description`` (token replaced by ``***``), never chained.
A 401 (revoked or wrong token) and a 404 (malformed token) are configuration errors (exit 2); a 409 means
another poller (or a webhook) uses this token (exit 75); 429 waits Telegram's ``retry_after``; 5xx and
network failures are retried a few times with a growing pause and then fail (exit 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tradebot.errors import ConfigError, LockedError, NotifierError
from tradebot.notify import BotClient

if TYPE_CHECKING:
    import requests

ATTEMPTS = 3  # per call: the first try and two retries
UPDATE_KINDS = ["message", "edited_message", "channel_post", "edited_channel_post", "callback_query"]


class BotApiError(NotifierError):
    """A Bot API call failed. ``status`` is the HTTP status (None: no answer); ``description`` Telegram's."""

    def __init__(self, message: str, *, status: int | None = None, description: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


def bot_id_of(token: str) -> int:
    """The bot's user id: the part of the token before the colon (public: it is the bot's id)."""
    head, sep, rest = token.partition(":")
    if not sep or not head.isdigit() or not rest:
        raise ConfigError("TELEGRAM_BOT_TOKEN", "is not a bot token (it looks like 123456789:AA…, as @BotFather gives it)")
    return int(head)


class BotApi(BotClient):
    """A Bot API client for one token."""

    def __init__(self, token: str, api_url: str, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, connect_timeout: float = 3.05,
                 read_timeout: float = 10.0) -> None:
        self.bot_id = bot_id_of(token)
        super().__init__(token, api_url, session, sleep)
        self._timeouts = (connect_timeout, read_timeout)

    def __repr__(self) -> str:  # never show the token
        return f"BotApi(bot_id={self.bot_id}, api_url={self.api_url!r})"

    @property
    def host(self) -> str:
        return self._host

    def _once(self, method: str, payload: dict[str, Any], read_timeout: float) -> Any:
        import requests

        try:
            resp = self._session.post(f"{self.api_url}/bot{self._token}/{method}", json=payload,
                                      timeout=(self._timeouts[0], read_timeout))
        except requests.RequestException as e:
            # Not chained: the requests exception's text contains the URL with the token.
            raise BotApiError(f"Telegram {method} failed: {type(e).__name__} ({self.host})") from None
        body = self._body(resp)
        if resp.status_code == 200 and body.get("ok") is True:
            return body.get("result")
        description = self._clean(str(body.get("description") or resp.reason or "no description"))
        status = resp.status_code
        if status == 401:
            raise ConfigError("TELEGRAM_BOT_TOKEN", f"was rejected by Telegram ({description}): the token is wrong "
                              "or was revoked; get the current one from @BotFather")
        if status == 404 and method == "getMe":
            raise ConfigError("TELEGRAM_BOT_TOKEN", f"was not recognised by Telegram at {self.host} ({description}); "
                              "check the token and TELEGRAM_API_URL")
        if status == 409:
            why = ("a webhook is set for this bot; remove it (deleteWebhook) to poll"
                   if "webhook" in description.lower() else
                   "another poller is reading this bot's updates (a `tradebot telegram` elsewhere, or another program)")
            raise LockedError(f"Telegram answered 409 Conflict: {why}; nothing done")
        retry_after = self._retry_after(body, resp.headers) if status == 429 else None
        raise BotApiError(f"Telegram {method} failed: HTTP {status} {description}", status=status,
                          description=description, retry_after=retry_after)

    def call(self, method: str, payload: dict[str, Any], *, read_timeout: float | None = None,
             attempts: int = ATTEMPTS, retry_server_errors: bool = True) -> Any:
        """Make one Bot API call; its ``result``. Retries 429 (after ``retry_after``, at most 30 s) and — unless
        ``retry_server_errors`` is False — 5xx and network failures (after 1 s, then 2 s), up to ``attempts``
        tries in all; raises the last error."""
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, payload, read_timeout or self._timeouts[1])
            except BotApiError as e:
                if not e.transient or attempt == attempts or (e.status != 429 and not retry_server_errors):
                    raise
                wait = e.retry_after if e.retry_after is not None else float(2 ** (attempt - 1))  # ≤ 30 s
                self._sleep(wait)
        raise AssertionError("unreachable")

    def get_me(self) -> dict[str, Any]:
        result = self.call("getMe", {})
        if not isinstance(result, dict) or not isinstance(result.get("username"), str):
            raise BotApiError(f"Telegram getMe at {self.host} returned no bot username")
        return result

    def get_updates(self, offset: int | None, timeout_s: int) -> list[dict[str, Any]]:
        """Updates from ``offset`` on (None: every unconfirmed one); waits up to ``timeout_s`` for the first."""
        payload: dict[str, Any] = {"timeout": timeout_s, "limit": 100, "allowed_updates": UPDATE_KINDS}
        if offset is not None:
            payload["offset"] = offset
        result = self.call("getUpdates", payload, read_timeout=timeout_s + 10.0)
        if not isinstance(result, list):
            raise BotApiError(f"Telegram getUpdates at {self.host} returned no list")
        return [u for u in result if isinstance(u, dict) and isinstance(u.get("update_id"), int)]
