"""One call run on a thread while the caller goes on: for work that mostly waits on another process (a
query the database server executes, an HTTP request), so that the wait overlaps the caller's own work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def in_background(fn: Callable[[], T], name: str) -> Callable[[], T]:
    """Start ``fn()`` on a daemon thread; returns a function that waits for it and returns its result, or
    raises what it raised — in the caller's thread, as if ``fn`` had been called there. Call the waiter
    before forking (no thread may be running across a fork)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 — handed to the caller's thread by wait()
            failure.append(e)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()

    def wait() -> T:
        thread.join()
        if failure:
            raise failure[0]
        return result[0]

    return wait
