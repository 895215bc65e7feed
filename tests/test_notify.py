"""TelegramNotifier with real requests against the local fake Bot API (tests/fakes/telegram_server.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.telegram_server import FakeTelegram, parse_html
from tradebot.errors import NotifierError
from tradebot.notify import (
    MAX_RETRY_AFTER_S,
    NullNotifier,
    TelegramNotifier,
    failure_message,
    format_krw,
    split_message,
    trade_message,
)

TOKEN = "123456:FAKE-secret-TOKEN_abcdefghijklmnopqrstu"
CHAT = "-1001234567890"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN) as server:
        yield server


def notifier(tg: FakeTelegram, sleeps: list[float] | None = None, **kw: Any) -> TelegramNotifier:
    return TelegramNotifier(kw.pop("token", TOKEN), CHAT, tg.url, timeout=(1, 2),
                            sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **kw)


def test_send_posts_html_message(tg: FakeTelegram) -> None:
    notifier(tg).send("<b>hello</b> &amp; bye")
    (msg,) = tg.messages
    assert msg == {"chat_id": CHAT, "text": "<b>hello</b> &amp; bye", "parse_mode": "HTML",
                   "disable_web_page_preview": True}
    assert tg.requests[0].path == f"/bot{TOKEN}/sendMessage"


def test_trade_message_escapes_every_value_and_formats_numbers(tg: FakeTelegram) -> None:
    text = trade_message(side="sell", market="KRW-BTC", mode="paper", volume=Decimal("0.00500000"),
                         avg_price=Decimal("143250000"), total=Decimal("-716250.5"), fee=Decimal("358.12549"),
                         reason="RSI<30 & MACD crossed <b>up</b>; price -1.2% vs sma20", status="filled")
    assert text == (
        "🔴 <b>SELL KRW-BTC</b> [PAPER]\n"
        "Status: filled\n"
        "Volume: 0.005 BTC\n"
        "Avg price: 143,250,000 KRW\n"
        "Total: -716,250.5 KRW\n"
        "Fee: 358.13 KRW\n"
        "Reason: RSI&lt;30 &amp; MACD crossed &lt;b&gt;up&lt;/b&gt;; price -1.2% vs sma20"
    )
    notifier(tg).send(text)  # Telegram's HTML parser accepts it (the fake rejects bare < and &)
    assert tg.texts == [text]
    assert parse_html(text)[0] is None


def test_trade_message_shortens_reason_and_escapes_odd_fields() -> None:
    text = trade_message(side="buy", market="KRW-<X>", mode="live&", volume=Decimal("1E-8"),
                         avg_price=Decimal("0.01234567"), total=Decimal("5000"), fee=Decimal("2.5"),
                         reason="a" * 150 + " & " + "b" * 300, status="<partial>")
    assert "🟢 <b>BUY KRW-&lt;X&gt;</b> [LIVE&amp;]" in text
    assert "Status: &lt;partial&gt;" in text
    assert "Volume: 0.00000001 &lt;X&gt;" in text  # never scientific notation
    assert "Avg price: 0.01234567 KRW" in text and "Total: 5,000 KRW" in text
    reason = text.split("Reason: ", 1)[1]
    assert reason.endswith("…") and len(reason.replace("&amp;", "&")) == 200
    assert parse_html(text)[0] is None


def test_failure_message(tg: FakeTelegram) -> None:
    text = failure_message("advisor", "Claude API HTTP 529 overloaded_error: <html> & more", "KRW-BTC", "live")
    assert text == ("⚠️ <b>tradebot: advisor failed</b>\nKRW-BTC [LIVE]\n"
                    "<code>Claude API HTTP 529 overloaded_error: &lt;html&gt; &amp; more</code>")
    assert failure_message("config", "x", None, None) == "⚠️ <b>tradebot: config failed</b>\n<code>x</code>"
    notifier(tg).send(text)
    assert tg.texts == [text]


def test_format_krw() -> None:
    assert format_krw(Decimal("1234567.891")) == "1,234,567.89"
    assert format_krw(Decimal("-1234")) == "-1,234"
    assert format_krw(Decimal("0.000123456789")) == "0.00012346"
    assert format_krw(Decimal("0")) == "0"
    assert format_krw(Decimal("-0.001")) == "-0.001"


def test_long_message_is_split_at_line_breaks(tg: FakeTelegram) -> None:
    lines = [f"<b>line {i}</b> price -1,234 &amp; more" for i in range(300)]
    text = "\n".join(lines)
    assert len(text) > 4096 * 2
    notifier(tg).send(text)
    assert len(tg.texts) >= 3
    assert all(len(t) <= 4096 for t in tg.texts)
    assert "\n".join(tg.texts).split("\n") == lines  # nothing lost, every cut at a line break


def test_split_reopens_tags_and_never_cuts_entities() -> None:
    text = "<pre>" + "\n".join("x" * 50 + " &amp; " + str(i) for i in range(200)) + "</pre>"
    parts = split_message(text, limit=1000)
    assert len(parts) > 1
    for part in parts:
        assert len(part) <= 1000
        assert part.startswith("<pre>") and part.endswith("</pre>")
        assert parse_html(part)[0] is None
    one_line = "word &amp; " * 1000  # no line breaks at all
    parts = split_message(one_line, limit=500)
    assert all(len(p) <= 500 and parse_html(p)[0] is None for p in parts)
    assert "".join(parts) == one_line.rstrip("\n")
    assert split_message("short") == ["short"]


def test_429_waits_retry_after_and_retries_once(tg: FakeTelegram) -> None:
    sleeps: list[float] = []
    tg.enqueue_rate_limit(3)
    notifier(tg, sleeps).send("hi")
    assert sleeps == [3.0]
    assert [r.status for r in tg.requests] == [429, 200]
    assert tg.texts == ["hi"]


def test_429_wait_is_capped_and_a_second_429_gives_up(tg: FakeTelegram) -> None:
    sleeps: list[float] = []
    tg.enqueue_rate_limit(600)
    tg.enqueue_rate_limit(600)
    with pytest.raises(NotifierError, match="HTTP 429 Too Many Requests: retry after 600"):
        notifier(tg, sleeps).send("hi")
    assert sleeps == [MAX_RETRY_AFTER_S]
    assert len(tg.requests) == 2 and tg.messages == []


@pytest.mark.parametrize("status, description", [
    (400, "Bad Request: chat not found"),
    (403, "Forbidden: bot was blocked by the user"),
])
def test_client_errors_are_not_retried_and_hide_the_token(tg: FakeTelegram, status: int, description: str) -> None:
    tg.enqueue_error(status, description)
    with pytest.raises(NotifierError) as info:
        notifier(tg).send("hi")
    assert str(info.value) == f"Telegram sendMessage failed: HTTP {status} {description}"
    assert TOKEN not in str(info.value)
    assert len(tg.requests) == 1


def test_wrong_token_401(tg: FakeTelegram) -> None:
    wrong = "999:WRONG-secret"
    with pytest.raises(NotifierError) as info:
        notifier(tg, token=wrong).send("hi")
    assert str(info.value) == "Telegram sendMessage failed: HTTP 401 Unauthorized"
    assert wrong not in repr(notifier(tg, token=wrong))
    assert len(tg.requests) == 1


def test_unescaped_html_is_rejected_by_telegram_and_reported(tg: FakeTelegram) -> None:
    with pytest.raises(NotifierError, match="can't parse entities"):
        notifier(tg).send("RSI < 30 & falling")


def test_connection_refused_hides_the_token() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = TelegramNotifier(TOKEN, CHAT, f"http://127.0.0.1:{port}", timeout=(1, 1))
    with pytest.raises(NotifierError) as info:
        n.send("hi")
    message = str(info.value)
    assert message == f"Telegram sendMessage failed: ConnectionError (127.0.0.1:{port})"
    assert TOKEN not in message
    # not chained either: a logged traceback cannot show the requests exception (whose text has the URL)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_timeout_hides_the_token() -> None:
    with socket.socket() as srv:  # accepts connections but never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        n = TelegramNotifier(TOKEN, CHAT, f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=(0.5, 0.2))
        with pytest.raises(NotifierError) as info:
            n.send("hi")
    assert "ReadTimeout" in str(info.value) and TOKEN not in str(info.value)


def test_null_notifier_does_nothing() -> None:
    NullNotifier().send("<b>anything</b>")  # no error, no network


def test_fake_runs_as_a_process(tmp_path: Path) -> None:
    out = tmp_path / "messages.jsonl"
    script = tmp_path / "errors.json"
    script.write_text(json.dumps([{"status": 429, "description": "Too Many Requests: retry after 1",
                                   "retry_after": 1}]))
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.telegram_server", "--port", "0", "--out", str(out),
                             "--token", TOKEN, "--script", str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        sleeps: list[float] = []
        TelegramNotifier(TOKEN, CHAT, url, sleep=sleeps.append).send("<i>one</i>")
        TelegramNotifier(TOKEN, CHAT, url).send("two")
        assert sleeps == [1.0]
        assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == ["<i>one</i>", "two"]
    finally:
        proc.terminate()
        proc.wait(5)
