"""A local fake of the Telegram Bot API (``sendMessage``, ``getMe``, and for Telegram control ``getUpdates``,
``editMessageText``, ``answerCallbackQuery``), over real HTTP so ``requests`` runs.

In tests::

    with FakeTelegram(token="123:ABC") as tg:
        TelegramNotifier("123:ABC", "42", api_url=tg.url).send("<b>hi</b>")
        assert tg.texts == ["<b>hi</b>"]

Like Telegram it answers ``{"ok": true, "result": {...}}`` or ``{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}``; answers 401 ``Unauthorized`` for a wrong token (when ``token`` is set),
answers ``getMe`` with the fake bot (``@tradebot_fake_bot``; not a delivered message), 404 for other
methods, 400 for an empty chat id or text, for text over 4,096 characters after entity
parsing, and for HTML that Telegram could not parse (unsupported or unbalanced tags, a bare ``<`` or ``&``).
``enqueue_error`` / ``enqueue_rate_limit`` script the next answers (of ``sendMessage``, or of ``method``).

Updates: ``message(text, …)``, ``press(message_id, data, …)`` and ``add_update(kind, body)`` queue updates
with increasing ``update_id``; ``getUpdates`` returns those at or after its ``offset`` (dropping — confirming —
the ones before it), waits up to its ``timeout`` for the first, and like Telegram answers 409 Conflict to a
long poll that a newer ``getUpdates`` interrupts. ``answerCallbackQuery`` accepts each press's id once;
``editMessageText`` needs a message this fake delivered and refuses identical content.

As a process (for end-to-end tests of the CLI)::

    python -m tests.fakes.telegram_server --port 0 --out messages.jsonl [--token T] [--script errors.json]

prints ``listening on http://127.0.0.1:PORT`` on its first stdout line and appends each delivered message
(the request's JSON body) as one line of ``--out``. A script is a JSON list of
``{"status": 429, "description": "...", "retry_after": 1}`` answers given to the next requests.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_TEXT = 4096
BOT_ID = 7000000001
BOT_USERNAME = "tradebot_fake_bot"
ALLOWED_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
                          "code", "pre", "blockquote", "tg-emoji"})
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)(\s[^<>]*)?>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9A-Fa-f]+);")


def parse_html(text: str) -> tuple[str | None, int]:
    """(error description or None, length of the parsed text in UTF-16 units), as Telegram's HTML mode."""
    stack: list[str] = []
    plain_units = 0
    i = 0

    def where() -> str:
        return f"at byte offset {len(text[:i].encode())}"

    while i < len(text):
        ch = text[i]
        if ch == "<":
            m = _TAG.match(text, i)
            if not m:
                return f"Bad Request: can't parse entities: Unsupported start tag \"\" {where()}", 0
            name = m.group(2).lower()
            if name not in ALLOWED_TAGS:
                return f"Bad Request: can't parse entities: Unsupported start tag \"{name}\" {where()}", 0
            if m.group(1):
                if not stack or stack[-1] != name:
                    return (f"Bad Request: can't parse entities: Unmatched end tag {where()}, "
                            f"expected \"</{stack[-1] if stack else ''}>\", found \"</{name}>\""), 0
                stack.pop()
            else:
                stack.append(name)
            i = m.end()
        elif ch == "&":
            m = _ENTITY.match(text, i)
            if not m:
                return f"Bad Request: can't parse entities: Unsupported entity {where()}", 0
            plain_units += 1
            i = m.end()
        else:
            plain_units += len(ch.encode("utf-16-le")) // 2
            i += 1
    if stack:
        return f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]}\"", 0
    return None, plain_units


@dataclass
class Recorded:
    path: str
    body: Any
    status: int


class FakeTelegram:
    """The fake Bot API. ``messages`` holds the JSON bodies of delivered messages, ``requests`` every try."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 out: str | None = None) -> None:
        self.token = token
        self.out = out
        self.messages: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self.request_times: list[float] = []
        self._errors: dict[str, deque[tuple[int, str, int | None]]] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.updates: list[dict[str, Any]] = []  # not confirmed yet
        self.confirmed: list[int] = []  # update ids a getUpdates offset confirmed
        self._update_ids = itertools.count(1001)
        self._polls = 0  # getUpdates calls so far: a waiting one that sees a newer one answers 409
        self.edits: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []  # the command menu setMyCommands set
        self.answers: list[dict[str, Any]] = []
        self._callbacks: dict[str, bool] = {}  # press id → answered
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeTelegram:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # scripting
    def enqueue_error(self, status: int, description: str, retry_after: int | None = None,
                      method: str = "sendMessage") -> None:
        """Answer the next ``method`` request with this error (a 429 carries ``parameters.retry_after``)."""
        with self._lock:
            self._errors.setdefault(method, deque()).append((status, description, retry_after))

    # updates
    def add_update(self, kind: str, body: dict[str, Any]) -> int:
        with self._cond:
            uid = next(self._update_ids)
            self.updates.append({"update_id": uid, kind: body})
            self._cond.notify_all()
        return uid

    def message(self, text: str, *, chat_id: int = 4242, user_id: int = 4242, chat_type: str = "private",
                date: int | None = None, kind: str = "message", is_bot: bool = False, **extra: Any) -> int:
        """Queue a message update (``date`` default: now), as the Telegram client would send it."""
        body = {"message_id": next(self._ids) + 500_000, "date": int(time.time()) if date is None else date,
                "chat": {"id": chat_id, "type": chat_type},
                "from": {"id": user_id, "is_bot": is_bot, "first_name": "Owner", "username": f"user{user_id}"},
                "text": text, **extra}
        if text.startswith("/"):
            body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self.add_update(kind, body)

    def press(self, message_id: int, data: str, *, user_id: int = 4242, chat_id: int = 4242,
              chat_type: str = "private") -> int:
        """Queue a callback query: a press of an inline button of message ``message_id``."""
        press_id = f"cb{next(self._ids)}"
        with self._lock:
            self._callbacks[press_id] = False
        return self.add_update("callback_query", {
            "id": press_id, "from": {"id": user_id, "is_bot": False, "first_name": "Owner"}, "data": data,
            "chat_instance": "1", "message": {"message_id": message_id, "date": int(time.time()),
                                              "chat": {"id": chat_id, "type": chat_type}, "text": "…"}})

    def keyboards(self) -> list[dict[str, Any]]:
        """Delivered messages that carry an inline keyboard, with their message_id."""
        return [m for m in self.messages if m.get("reply_markup")]

    def _get_updates(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]] | list[dict[str, Any]]:
        offset = body.get("offset")
        timeout = min(float(body.get("timeout") or 0), 60.0)
        limit = int(body.get("limit") or 100)
        deadline = time.monotonic() + timeout
        with self._cond:
            self._polls += 1
            mine = self._polls
            self._cond.notify_all()
            while True:
                if isinstance(offset, int):
                    self.confirmed += [u["update_id"] for u in self.updates if u["update_id"] < offset]
                    self.updates = [u for u in self.updates if u["update_id"] >= offset]
                ready = self.updates[:limit]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    return ready
                self._cond.wait(min(left, 0.05))
                if self._polls != mine:
                    return 409, {"ok": False, "error_code": 409, "description": "Conflict: terminated by other "
                                 "getUpdates request; make sure that only one bot instance is running"}, {}

    def enqueue_rate_limit(self, retry_after: int) -> None:
        self.enqueue_error(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    # serving
    def _answer(self, path: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        def error(status: int, description: str, retry_after: int | None = None
                  ) -> tuple[int, dict[str, Any], dict[str, str]]:
            payload: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
            headers = {}
            if retry_after is not None:
                payload["parameters"] = {"retry_after": retry_after}
                headers["Retry-After"] = str(retry_after)
            return status, payload, headers

        m = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path.split("?")[0])
        if not m:
            return error(404, "Not Found")
        token, method = m.groups()
        if self.token is not None and token != self.token:
            return error(401, "Unauthorized")
        if method == "getMe":  # not a message: never scripted, never in ``messages``
            return 200, {"ok": True, "result": {"id": BOT_ID, "is_bot": True, "first_name": "tradebot fake",
                                                "username": BOT_USERNAME, "can_join_groups": True,
                                                "can_read_all_group_messages": False,
                                                "supports_inline_queries": False}}, {}
        if method == "setMyCommands":
            with self._lock:
                self.commands = list((body or {}).get("commands") or [])
            return 200, {"ok": True, "result": True}, {}
        if method not in ("sendMessage", "getUpdates", "editMessageText", "answerCallbackQuery"):
            return error(404, "Not Found")
        with self._lock:
            queue = self._errors.get(method)
            scripted = queue.popleft() if queue else None
        if scripted:
            return error(*scripted)
        if method == "getUpdates":
            got = self._get_updates(body if isinstance(body, dict) else {})
            return got if isinstance(got, tuple) else (200, {"ok": True, "result": got}, {})
        if method == "answerCallbackQuery":
            qid = str((body or {}).get("callback_query_id"))
            with self._lock:
                if self._callbacks.get(qid) is not False:
                    return error(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
                self._callbacks[qid] = True
                self.answers.append(body)
            return 200, {"ok": True, "result": True}, {}
        if not isinstance(body, dict):
            return error(400, "Bad Request: invalid JSON body")
        if not str(body.get("chat_id", "")).strip():
            return error(400, "Bad Request: chat_id is empty")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return error(400, "Bad Request: message text is empty")
        length = len(text.encode("utf-16-le")) // 2
        if body.get("parse_mode") == "HTML":
            problem, length = parse_html(text)
            if problem:
                return error(400, problem)
        if length > MAX_TEXT:
            return error(400, "Bad Request: message is too long")
        if method == "editMessageText":
            with self._lock:
                mid = body.get("message_id")
                if not isinstance(mid, int) or not 1 <= mid <= len(self.messages) or \
                        str(self.messages[mid - 1]["chat_id"]) != str(body.get("chat_id")):
                    return error(400, "Bad Request: message to edit not found")
                current = ([e["text"] for e in self.edits if e["message_id"] == mid] or [self.messages[mid - 1]["text"]])[-1]
                if current == text:
                    return error(400, "Bad Request: message is not modified: specified new message content and reply "
                                      "markup are exactly the same as a current content and reply markup of the message")
                self.edits.append(body)
            return 200, {"ok": True, "result": {"message_id": mid, "date": int(time.time()), "text": text,
                                                "chat": {"id": body["chat_id"], "type": "private"}}}, {}
        with self._lock:
            self.messages.append(body)
            n = len(self.messages)
            if self.out:
                with open(self.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(body, ensure_ascii=False) + "\n")
        result = {"message_id": n, "date": int(time.time()),
                  "chat": {"id": body["chat_id"], "type": "private"}, "text": text}
        return 200, {"ok": True, "result": result}, {}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = None
                status, payload, headers = fake._answer(self.path, body)
                with fake._lock:
                    fake.requests.append(Recorded(self.path, body, status))
                    fake.request_times.append(time.monotonic())
                data = json.dumps(payload, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Telegram Bot API (sendMessage, getMe) for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", help="append each delivered message (JSON body) to this JSONL file")
    parser.add_argument("--token", help="answer 401 for any other token")
    parser.add_argument("--script",
                        help="JSON list of errors for the next requests: {status, description, retry_after}")
    args = parser.parse_args(argv)
    fake = FakeTelegram(args.host, args.port, token=args.token, out=args.out)
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            for entry in json.load(f):
                fake.enqueue_error(int(entry["status"]), entry.get("description", "Error"), entry.get("retry_after"),
                                   entry.get("method", "sendMessage"))
    print(f"listening on {fake.url}", flush=True)
    try:
        fake._server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
