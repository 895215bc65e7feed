"""A misbehaving HTTP proxy in front of an Upbit-compatible API: it forwards every request to ``upstream``
(the simulator), except those it is told to break, which it answers with an error that echoes the request's
headers — ``Authorization: Bearer <JWT>`` included — the way a careless proxy or endpoint does.

In tests::

    with EchoingProxy(sim.url, [Echo("GET", "/v1/accounts", 401)]) as proxy:
        run tradebot with UPBIT_API_URL=proxy.url

Each :class:`Echo` rule answers a request whose method and path (without the query) match, with ``status``
and a body of the chosen ``shape``: ``"json"`` (Upbit's ``{"error": {"name", "message"}}`` with the header in
both), ``"text"`` (a plain-text page quoting the headers) or ``"json_name"`` (the JWT alone as the error
name). ``times`` limits how often a rule fires (None: always). ``proxy.echoed`` counts the answers that did
carry a JWT, so a test can prove the leak was really offered to the client.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests


@dataclass
class Echo:
    method: str
    path: str
    status: int
    shape: str = "json"
    times: int | None = None


class EchoingProxy:
    def __init__(self, upstream: str, rules: list[Echo]) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules = rules
        self.echoed = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

            def do_DELETE(self) -> None:
                proxy._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> EchoingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _rule(self, method: str, path: str) -> Echo | None:
        with self._lock:
            for rule in self.rules:
                if rule.method == method and rule.path == path and (rule.times is None or rule.times > 0):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        rule = self._rule(method, urlsplit(h.path).path)
        if rule is None:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            r = requests.request(method, self.upstream + h.path, headers=headers, data=body, timeout=30)
            self._reply(h, r.status_code, r.content, r.headers.get("Content-Type", "application/json"),
                        {k: v for k, v in r.headers.items() if k.lower() == "remaining-req"})
            return
        auth = h.headers.get("Authorization", "")
        if "eyJ" in auth:
            with self._lock:
                self.echoed += 1
        quoted = "; ".join(f"{k}: {v}" for k, v in h.headers.items())
        if rule.shape == "text":
            self._reply(h, rule.status, f"Bad gateway. Request headers were: {quoted}".encode(), "text/plain")
            return
        if rule.shape == "json_name":
            error = {"name": auth, "message": "rejected"}
        else:
            error = {"name": "invalid_request", "message": f"header rejected: Authorization: {auth} (request: {quoted})"}
        self._reply(h, rule.status, json.dumps({"error": error}).encode(), "application/json")

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str,
               extra: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
