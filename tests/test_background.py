"""``tradebot.infra.background.in_background``: the result, or the exception, arrives in the caller's thread."""

from __future__ import annotations

import threading

import pytest

from tradebot.errors import StorageError
from tradebot.infra.background import in_background


def test_the_waiter_returns_what_the_call_returned_computed_on_another_thread() -> None:
    started = threading.Event()
    release = threading.Event()
    seen: list[str] = []

    def work() -> list[int]:
        seen.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return [1, 2, 3]

    wait = in_background(work, "tb-test")
    assert started.wait(10)  # running while the caller goes on
    release.set()
    assert wait() == [1, 2, 3]
    assert seen == ["tb-test"]


def test_the_waiter_raises_what_the_call_raised() -> None:
    def fail() -> int:
        raise StorageError("cannot connect to PostgreSQL at /tmp/x:5432: refused")

    wait = in_background(fail, "tb-test")
    with pytest.raises(StorageError, match="refused"):
        wait()
