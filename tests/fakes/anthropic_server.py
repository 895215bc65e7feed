"""A local fake of the Anthropic Messages API, spoken over real HTTP so the real ``anthropic`` client runs.

In tests::

    with FakeAnthropic() as fake:
        fake.enqueue_tool_answer({"decision": "buy", "confidence": 0.7, "fraction": 0.2, "reason": "..."})
        advisor = ClaudeAdvisor("sk-test", "claude-sonnet-4-6", base_url=fake.url, max_retries=0)
        result = advisor.advise(inp)
        body = fake.last_body  # the JSON the client sent: system, messages, tools, tool_choice ...

Answers come from a FIFO queue (tool answers, text answers, raw status/body/headers, delays); when the queue
is empty the fake answers ``hold``. Like the real API it:

- answers ``POST /v1/messages`` with a full Message object (``id``, ``type``, ``role``, ``model``,
  ``content``, ``stop_reason``, ``stop_details``, ``usage`` with the cache fields) and a ``request-id`` header;
- rejects a request without ``model`` / ``max_tokens`` / ``messages`` (400 ``invalid_request_error``);
- rejects a ``strict`` tool whose schema uses keywords strict tool use does not support (``minimum``,
  ``maximum``, ``minLength``, ``maxLength``, ...), with the same 400 message shape the API returns;
- rejects a forced tool (``tool_choice`` any/tool) combined with extended thinking (400);
- with ``api_key`` set, answers 401 ``authentication_error`` when the key does not match;
- answers ``GET /v1/models/{id}`` (and ``GET /v1/models``) from the Models API for the ids in ``models``
  (default: every id in ``tradebot.advisor.claude.PRICES``), 404 ``not_found_error`` for any other id.
  These requests are recorded but do not take answers from the queue.

As a process (for end-to-end tests of the CLI)::

    python -m tests.fakes.anthropic_server --port 0 --script answers.json --requests-log requests.jsonl \
        [--api-key KEY] [--model claude-sonnet-4-6 ...]

prints ``listening on http://127.0.0.1:PORT`` on its first stdout line. The script is a JSON list of
entries, answered in order (then ``hold``)::

    {"tool_input": {...}, "usage": {...}, "stop_reason": "tool_use"}
    {"text": "...", "stop_reason": "end_turn" | "refusal" | "max_tokens"}
    {"status": 529, "body": {...} | "raw text", "headers": {...}}
    {"delay": 5.0}                   # sleep, then answer hold (the client should time out first)
    {"delay": 1.0, "tool_input": {...}}   # any entry may carry a delay
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

DEFAULT_HOLD: dict[str, Any] = {
    "decision": "hold",
    "confidence": 0.5,
    "fraction": 0,
    "reason": "Fake Anthropic server: no scripted answer left, holding.",
}

# JSON Schema keywords that Anthropic's strict tool use / structured outputs reject with a 400.
_STRICT_UNSUPPORTED = (
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "maxItems", "uniqueItems", "minProperties", "maxProperties",
)


MODEL_CREATED_AT = "2025-01-01T00:00:00Z"


def display_name(model_id: str) -> str:
    """``claude-sonnet-4-6`` → ``Claude Sonnet 4.6`` (how the Models API names its models)."""
    words: list[str] = []
    for part in model_id.split("-"):
        if part.isdigit() and len(part) == 8:  # a date suffix: claude-haiku-4-5-20251001 is "Claude Haiku 4.5"
            continue
        if part.isdigit() and words and words[-1][-1:].isdigit():
            words[-1] += "." + part
        else:
            words.append(part.capitalize() if not part.isdigit() else part)
    return " ".join(words)


def default_models() -> dict[str, str]:
    """The model ids tradebot has prices for, with their display names."""
    from tradebot.advisor.claude import PRICES

    return {m: display_name(m) for m in PRICES}


@dataclass
class Scripted:
    """One queued answer."""

    status: int = 200
    body: Any = None  # dict → JSON (NaN allowed), str/bytes → sent verbatim; None → built message
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # for built messages
    content: list[dict[str, Any]] | None = None
    stop_reason: str | None = "tool_use"
    stop_details: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any  # parsed JSON, or None when the body was not JSON


def _estimate_input_tokens(body: dict[str, Any]) -> int:
    """A plausible ``input_tokens`` for a request: its text length / 3.5 plus the forced-tool overhead."""
    text = json.dumps(body.get("system", "")) + json.dumps(body.get("messages", [])) + json.dumps(body.get("tools", []))
    return len(text) * 2 // 7 + (346 if body.get("tools") else 0)


def _strict_schema_problem(schema: Any, where: str) -> str | None:
    """The message the API gives for the first unsupported keyword in a strict tool schema, if any."""
    if not isinstance(schema, dict):
        return None
    bad = [k for k in _STRICT_UNSUPPORTED if k in schema]
    if bad:
        kind = schema.get("type", "schema")
        props = ", ".join(sorted(bad))
        noun = "property" if len(bad) == 1 else "properties"
        verb = "is" if len(bad) == 1 else "are"
        return f"{where}: For '{kind}' type, {noun} {props} {verb} not supported"
    if schema.get("type") == "object" and schema.get("additionalProperties", True) is not False:
        return f"{where}: For 'object' type, 'additionalProperties' must be explicitly set to false"
    for sub in (schema.get("properties") or {}).values():
        problem = _strict_schema_problem(sub, where)
        if problem:
            return problem
    if "items" in schema:
        return _strict_schema_problem(schema["items"], where)
    return None


def _default_answer(body: dict[str, Any]) -> Scripted:
    """Hold: for the one-market tool one decision; for the portfolio tool (``record_decisions``) one entry
    for every market its schema names."""
    tool = (body.get("tools") or [{}])[0]
    if tool.get("name") == "record_decisions":
        entry = tool["input_schema"]["properties"]["decisions"]["items"]
        markets = entry["properties"]["market"]["enum"]
        answer = {"decisions": [{"market": m, **DEFAULT_HOLD} for m in markets]}
        return Scripted(content=[{"type": "tool_use", "id": "", "name": "record_decisions", "input": answer}])
    return Scripted(content=[{"type": "tool_use", "id": "", "name": "record_decision", "input": dict(DEFAULT_HOLD)}])


class FakeAnthropic:
    """The fake server. Start it with ``with FakeAnthropic() as fake:`` or ``start()`` / ``stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                 requests_log: str | None = None, models: Mapping[str, str] | Iterable[str] | None = None) -> None:
        self.api_key = api_key
        # Known model ids → display names, for GET /v1/models/{id}. Mutable: tests may add or remove ids.
        if models is None:
            self.models = default_models()
        elif isinstance(models, Mapping):
            self.models = dict(models)
        else:
            self.models = {m: display_name(m) for m in models}
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._requests_log = requests_log
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAnthropic:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping in a delay
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ scripting
    def enqueue(self, item: Scripted) -> None:
        with self._lock:
            self._queue.append(item)

    def enqueue_tool_answer(self, tool_input: Any, *, usage: dict[str, Any] | None = None,
                            stop_reason: str | None = "tool_use", name: str = "record_decision",
                            text_before: str | None = None, delay: float = 0.0) -> None:
        """Answer with a ``tool_use`` block whose ``input`` is ``tool_input`` (sent as-is; NaN is sent as
        the JSON literal ``NaN``)."""
        content: list[dict[str, Any]] = []
        if text_before:
            content.append({"type": "text", "text": text_before})
        content.append({"type": "tool_use", "id": "", "name": name, "input": tool_input})
        self.enqueue(Scripted(content=content, stop_reason=stop_reason, usage=usage, delay=delay))

    def enqueue_text(self, text: str, *, stop_reason: str | None = "end_turn", usage: dict[str, Any] | None = None,
                     stop_details: dict[str, Any] | None = None, delay: float = 0.0) -> None:
        """Answer with a text block (e.g. ``stop_reason="refusal"`` or ``"max_tokens"``)."""
        content = [{"type": "text", "text": text}] if text else []
        if stop_reason == "refusal" and stop_details is None:
            stop_details = {"type": "refusal", "category": None, "explanation": None}
        self.enqueue(Scripted(content=content, stop_reason=stop_reason, usage=usage, stop_details=stop_details,
                              delay=delay))

    def enqueue_raw(self, status: int, body: Any, headers: dict[str, str] | None = None, *,
                    delay: float = 0.0) -> None:
        """Answer with exactly this status, body (dict → JSON, str/bytes verbatim) and headers."""
        self.enqueue(Scripted(status=status, body=body, headers=dict(headers or {}), delay=delay))

    def enqueue_error(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer with the API's error shape ``{"type": "error", "error": {"type", "message"}}``."""
        self.enqueue_raw(status, {"type": "error", "error": {"type": error_type, "message": message}}, headers)

    def enqueue_delay(self, seconds: float) -> None:
        """Sleep ``seconds`` before answering hold: a client with a shorter timeout sees a timeout."""
        self.enqueue(Scripted(content=[{"type": "tool_use", "id": "", "name": "record_decision",
                                        "input": dict(DEFAULT_HOLD)}], delay=seconds))

    def enqueue_script_entry(self, entry: dict[str, Any]) -> None:
        """One entry of a JSON script (see the module docstring)."""
        delay = float(entry.get("delay", 0.0))
        if "status" in entry:
            self.enqueue_raw(int(entry["status"]), entry.get("body"), entry.get("headers"), delay=delay)
        elif "tool_input" in entry:
            self.enqueue_tool_answer(entry["tool_input"], usage=entry.get("usage"),
                                     stop_reason=entry.get("stop_reason", "tool_use"),
                                     name=entry.get("name", "record_decision"), delay=delay)
        elif "text" in entry:
            self.enqueue_text(entry["text"], stop_reason=entry.get("stop_reason", "end_turn"),
                              usage=entry.get("usage"), delay=delay)
        elif "delay" in entry:
            self.enqueue_delay(delay)
        else:
            raise ValueError(f"unknown script entry: {entry!r}")

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]

    @property
    def last_body(self) -> Any:
        return self.requests[-1].body if self.requests else None

    # ------------------------------------------------------------------------------------------- serving
    def _next(self) -> Scripted | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)
            if self._requests_log:
                with open(self._requests_log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"method": req.method, "path": req.path, "body": req.body}) + "\n")

    def _authenticate(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        """401 ``authentication_error`` when ``api_key`` is set and the request carries another key."""
        if self.api_key is not None:
            auth = headers.get("authorization", "")
            key = headers.get("x-api-key") or (auth[7:] if auth.lower().startswith("bearer ") else "")
            if key != self.api_key:
                return 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
        return None

    def _model_info(self, model_id: str) -> dict[str, Any]:
        return {"type": "model", "id": model_id, "display_name": self.models[model_id],
                "created_at": MODEL_CREATED_AT, "lifecycle": "active"}

    def _models_answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The Models API: ``GET /v1/models`` (one page, all ids) and ``GET /v1/models/{id}``."""
        problem = self._authenticate(headers)
        if problem:
            return problem
        if path == "/v1/models":
            data = [self._model_info(m) for m in self.models]
            return 200, {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None}
        model_id = unquote(path.removeprefix("/v1/models/"))
        if model_id not in self.models:
            return 404, {"type": "error", "error": {"type": "not_found_error", "message": f"model: {model_id}"}}
        return 200, self._model_info(model_id)

    def _validate(self, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]] | None:
        """The error the real API would give for this request, if any."""
        def err(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
            return status, {"type": "error", "error": {"type": kind, "message": message}}

        problem = self._authenticate(headers)
        if problem:
            return problem
        if not isinstance(body, dict):
            return err(400, "invalid_request_error", "Request body must be a JSON object")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return err(400, "invalid_request_error", f"{name}: Field required")
        tools = body.get("tools") or []
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and tool.get("strict"):
                problem = _strict_schema_problem(tool.get("input_schema"), f"tools.{i}.custom")
                if problem:
                    return err(400, "invalid_request_error", problem)
        choice = body.get("tool_choice") or {}
        thinking = body.get("thinking") or {}
        if choice.get("type") in ("any", "tool") and thinking.get("type") in ("enabled", "adaptive"):
            return err(400, "invalid_request_error",
                       "Thinking may not be enabled when tool_choice forces tool use.")
        if choice.get("type") == "tool" and choice.get("name") not in {t.get("name") for t in tools}:
            return err(400, "invalid_request_error", f"tool_choice.name: tool {choice.get('name')!r} not found")
        return None

    def _message(self, item: Scripted, body: dict[str, Any], n: int) -> dict[str, Any]:
        content = []
        for block in item.content or []:
            block = dict(block)
            if block.get("type") == "tool_use" and not block.get("id"):
                block["id"] = f"toolu_fake_{n:04d}"
            content.append(block)
        usage = {
            "input_tokens": _estimate_input_tokens(body),
            "output_tokens": 60,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "server_tool_use": None,
            "service_tier": "standard",
        }
        if item.usage is not None:
            usage.update(item.usage)
        return {
            "id": f"msg_fake_{n:04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": content,
            "stop_reason": item.stop_reason,
            "stop_sequence": None,
            "stop_details": item.stop_details,
            "usage": usage,
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "FakeAnthropic/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str], request_id: str) -> None:
                if isinstance(payload, (dict, list)):
                    data = json.dumps(payload).encode()  # allow_nan: NaN goes out as the literal NaN
                    ctype = "application/json"
                elif isinstance(payload, bytes):
                    data, ctype = payload, "application/octet-stream"
                elif payload is None:
                    data, ctype = b"", "text/plain"
                else:
                    data, ctype = str(payload).encode(), "text/plain; charset=utf-8"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", headers.pop("Content-Type", ctype))
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("request-id", request_id)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

            def do_POST(self) -> None:
                n = next(fake._ids)
                request_id = f"req_fake_{n:04d}"
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = None
                fake._record(RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                             raw, body))
                if self.path.split("?")[0] != "/v1/messages":
                    self._send(404, {"type": "error", "error": {"type": "not_found_error",
                                                                "message": "Not found"}}, {}, request_id)
                    return
                problem = fake._validate({k.lower(): v for k, v in self.headers.items()}, body)
                if problem:
                    self._send(problem[0], problem[1], {}, request_id)
                    return
                item = fake._next() or _default_answer(body)
                if item.delay and fake._stop.wait(item.delay):
                    return  # server stopping
                if item.body is not None or item.content is None:
                    self._send(item.status, item.body, dict(item.headers), request_id)
                else:
                    self._send(item.status, fake._message(item, body, n), dict(item.headers), request_id)

            def do_GET(self) -> None:
                n = next(fake._ids)
                request_id = f"req_fake_{n:04d}"
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake._record(RecordedRequest("GET", self.path, headers, b"", None))
                path = self.path.split("?")[0]
                if path == "/v1/models" or (path.startswith("/v1/models/") and path.count("/") == 3):
                    status, payload = fake._models_answer(path, headers)
                    self._send(status, payload, {}, request_id)
                    return
                self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}},
                           {}, request_id)

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Anthropic Messages API for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", help="JSON file: a list of answers, in order (then hold)")
    parser.add_argument("--requests-log", help="append every request (method, path, JSON body) to this JSONL file")
    parser.add_argument("--api-key", help="answer 401 unless the client sends this key")
    parser.add_argument("--model", action="append", dest="models",
                        help="a model id GET /v1/models/{id} knows (repeatable; default: the ids tradebot prices)")
    args = parser.parse_args(argv)
    fake = FakeAnthropic(args.host, args.port, api_key=args.api_key, requests_log=args.requests_log,
                         models=args.models)
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            for entry in json.load(f):
                fake.enqueue_script_entry(entry)
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
