"""Recorded decisions through the live risk gate and the backtest's fill model: the counterfactual ledgers of
``tradebot advisors report`` (issue 13), resumable from a checkpoint.

:func:`replay_decisions` follows one advisor's buy and sell decisions from a starting KRW balance and no coin:
a decision made during the hour of bar ``i`` (or, in an hour without trades, after it) fills at the open of the
next bar, the first that began after it (the cycle at 13:05 fills at 14:00), through
:class:`~tradebot.backtest.simulate._GateSizer`'s use of :func:`tradebot.risk.gate` and
:func:`tradebot.market.engine.run_backtest`'s fills (see :mod:`tradebot.backtest.simulate`). The last decision
of an hour wins.

**Checkpoints.** A year of hourly decisions is thousands of gate calls a ledger, and a report run a day later
adds one day. So a replay can start from a :class:`Checkpoint`: the engine's and the gate sizer's state at the
start of a bar (KRW, coin, cost basis, fills so far, the daily loss tracker) and the equity of the bars before
it. A checkpoint is used only when the digest of everything that state depends on is unchanged — the bars up
to its own (whose open the last decisions before it filled at), each earlier bar's decision, the starting KRW,
the market, the limits, the fee and this code (the source of the engine, the gate, the sizer and this module):
a candle the cache replaced, a decision recorded late or another setting makes the replay start from the
first bar. Each replay returns a new checkpoint at the first bar of the UTC day before its last bar's day (the
latest hours stay out of it: their candles and decisions may still come in). Going on from a checkpoint gives
the very floats of one replay from the first bar: the engine and the sizer go on from the same state.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.backtest.simulate import _dec, _GateSizer
from tradebot.models import Decision, Market

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from tradebot.risk import RiskLimits

CHECKPOINT_MIN_BARS = 48  # a shorter replay is not checkpointed: it costs next to nothing


class _DecisionSizer(_GateSizer):
    """The gate sizer for recorded decisions: bar ``i``'s signal is the decision recorded in its hour."""

    def __init__(self, market: Market, per_bar: npt.NDArray[np.float64], days: Sequence[int], limits: RiskLimits,
                 fee_rate: float, opens: npt.NDArray[np.float64]) -> None:
        import numpy as np

        super().__init__(market, [], None, limits, fee_rate, days)
        signal, fractions = per_bar[:, 0], per_bar[:, 2]
        # Python floats per bar (only the visited bars' decisions are ever made: not one per bar up front).
        self._confidences: list[float] = per_bar[:, 1].tolist()
        self._fractions: list[float] = fractions.tolist()
        self._made: dict[tuple[str, float, float], Decision] = {}  # a few distinct decisions, made once each
        # For next_visit: the buy signals that can fill (not the last bar's), their fractions and fill prices.
        self._buys = np.flatnonzero(signal[:-1] > 0)
        self._buy_list: list[int] = self._buys.tolist()
        self._buy_fractions = fractions[self._buys]
        self._buy_prices = opens[self._buys + 1]
        self._sells: list[int] = np.flatnonzero(signal < 0).tolist()
        self._end = len(signal)

    def decision_at(self, i: int, side: str) -> Decision:
        key = (side, self._confidences[i], self._fractions[i])
        d = self._made.get(key)
        if d is None:
            action, confidence, fraction = key
            d = self._made[key] = Decision(action, _dec(confidence), _dec(fraction), "")  # type: ignore[arg-type]
        return d

    def next_visit(self, i: int, cash: float, coin: float) -> int:
        """:data:`~tradebot.market.engine.NextVisit`: the first signal after ``i`` that could trade with ``cash``
        and ``coin`` — the next sell, or an earlier buy that passes the room test of :meth:`__call__` (the same
        float arithmetic, on every buy up to that sell at once). Buys it skips never reach the gate, exactly as
        that test would have refused them one by one."""
        import numpy as np

        n = bisect.bisect_right(self._sells, i)
        stop = self._sells[n] if n < len(self._sells) else self._end
        a, b = bisect.bisect_right(self._buy_list, i), bisect.bisect_left(self._buy_list, stop)
        if a == b:
            return stop
        room = np.minimum(np.minimum(self._buy_fractions[a:b] * cash, self._max_order),
                          np.minimum(self._max_position - coin * self._buy_prices[a:b], cash / (1.0 + self.fee_rate)))
        possible = np.flatnonzero(~(room < self._minimum))
        return self._buy_list[a + int(possible[0])] if possible.size else stop


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A ledger at the start of bar ``bar``: the decisions of the bars before it replayed (they filled at or
    before its open). ``digest`` covers everything this state depends on (see the module's docstring)."""

    bar: int
    digest: str
    cash: float
    units: int  # 1e-8 coin
    basis: float  # the engine's cost basis of the coin held
    fills: int
    last: tuple[float, float, int] | None  # the sizer's (KRW, coin, UTC day) at its last call
    sizer_basis: float  # the sizer's own cost basis (for the realized P&L of the daily loss limit)
    realized: dict[int, float]  # realized P&L by UTC day (days since 1970)
    equity: npt.NDArray[np.float64]  # of the bars before ``bar``, marked to their close

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form; floats are written as their shortest round-tripping decimal, the equity as bytes."""
        import numpy as np

        return {"bar": self.bar, "digest": self.digest, "cash": self.cash, "units": self.units, "basis": self.basis,
                "fills": self.fills, "last": list(self.last) if self.last is not None else None,
                "sizer_basis": self.sizer_basis, "realized": [[d, v] for d, v in self.realized.items()],
                "equity": base64.b64encode(self.equity.astype(np.dtype("<f8")).tobytes()).decode()}

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint | None:
        """The checkpoint ``data`` holds, or None when it is not one (a damaged file is only a slower report)."""
        import numpy as np

        try:
            last = data["last"]
            equity = np.frombuffer(base64.b64decode(data["equity"], validate=True), dtype=np.dtype("<f8"))
            checkpoint = cls(int(data["bar"]), str(data["digest"]), float(data["cash"]), int(data["units"]),
                             float(data["basis"]), int(data["fills"]),
                             (float(last[0]), float(last[1]), int(last[2])) if last is not None else None,
                             float(data["sizer_basis"]), {int(d): float(v) for d, v in data["realized"]},
                             equity.astype(np.float64))
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        return checkpoint if len(checkpoint.equity) == checkpoint.bar else None


@dataclass(frozen=True, eq=False)
class Replay:
    """A replayed ledger: its equity per bar (marked to the close), and where the next replay may start."""

    equity: npt.NDArray[np.float64]
    final_equity: float
    max_drawdown: float  # largest fall from a peak, a fraction of the peak
    fills: int
    checkpoint: Checkpoint | None


@functools.cache
def _code() -> bytes:
    """The source of everything a ledger's numbers come from: a changed rule makes old checkpoints useless."""
    from tradebot import models, risk, upbit_rules
    from tradebot.backtest import simulate
    from tradebot.market import engine

    h = hashlib.blake2b(digest_size=16)
    try:
        for module in (engine, simulate, risk, upbit_rules, models):
            h.update(Path(str(module.__file__)).read_bytes())
        h.update(Path(__file__).read_bytes())
    except OSError:  # the source cannot be read: no checkpoint can be trusted, so none ever matches
        return os.urandom(16)
    return h.digest()


def _digest(params: bytes, bars: npt.NDArray[np.float64], per_bar: npt.NDArray[np.float64], bar: int) -> str:
    h = hashlib.blake2b(params, digest_size=16)
    h.update(bars[:bar + 1].tobytes())  # up to the bar itself: the last decisions before it fill at its open
    h.update(per_bar[:bar].tobytes())
    return h.hexdigest()


def replay_decisions(bars: npt.NDArray[np.float64], decisions: npt.NDArray[np.float64], *, limits: RiskLimits,
                     market: Market, starting_krw: float, resume: Checkpoint | None = None) -> Replay | None:
    """Follow recorded ``decisions`` (rows of unix time, +1 buy or -1 sell, confidence, fraction; oldest first)
    from ``starting_krw`` and no coin over hourly ``bars`` (rows of start in unix seconds, open, high, low,
    close; oldest first), going on from ``resume`` when it still holds. None when fewer than two bars are
    covered (nothing can fill)."""
    import numpy as np

    from tradebot.market.engine import run_backtest
    from tradebot.upbit_rules import FEE_RATE

    n = len(bars)
    if n < 2:
        return None
    epochs = bars[:, 0]
    bar = np.searchsorted(epochs, decisions[:, 0], side="right") - 1
    # Each bar's last decision (the first of the reversed order), then only those made after the first bar began.
    last = len(bar) - 1 - np.unique(bar[::-1], return_index=True)[1]
    last = last[bar[last] >= 0]
    at = bar[last]
    per_bar = np.zeros((n, 3))  # signal (+1 buy, -1 sell), confidence, fraction
    per_bar[at] = decisions[last, 1:4]
    per_bar[at, 2] = np.minimum(per_bar[at, 2], 1.0)
    signal = per_bar[:, 0].copy()
    rate = float(FEE_RATE)
    o, h, lo, c = (np.ascontiguousarray(bars[:, k]) for k in (1, 2, 3, 4))
    day_of = (epochs // 86400).astype(np.int64)  # the daily loss limit's UTC day of each bar
    sizer = _DecisionSizer(market, per_bar, day_of.tolist(), limits, rate, o)

    params = repr((_code(), str(market), starting_krw, limits, str(FEE_RATE))).encode()
    keep = int(np.searchsorted(day_of, day_of[-1] - 1))  # the first bar of the day before the last bar's
    keep = keep if keep >= CHECKPOINT_MIN_BARS else 0
    start, cash, units, basis, fills, parts = 0, starting_krw, 0, 0.0, 0, []
    checkpoint = None
    if (resume is not None and 0 < resume.bar <= keep
            and resume.digest == _digest(params, bars, per_bar, resume.bar)):
        checkpoint, start, fills, parts = resume, resume.bar, resume.fills, [resume.equity]
        cash, units, basis = resume.cash, resume.units, resume.basis
        sizer._last, sizer._basis, sizer._realized_by_day = resume.last, resume.sizer_basis, dict(resume.realized)
    for stop in ([keep] if start < keep else []) + [n - 1]:
        def size(i: int, side: Any, krw: float, coin: float, price: float, _at: int = start) -> float:
            return sizer(i + _at, side, krw, coin, price)

        def visit(i: int, krw: float, coin: float, _at: int = start) -> int:
            return sizer.next_visit(i + _at, krw, coin) - _at

        r = run_backtest(o[start:stop + 1], h[start:stop + 1], lo[start:stop + 1], c[start:stop + 1],
                         signal[start:stop + 1], starting_krw=cash, starting_units=units, starting_basis=basis,
                         fee_rate=rate, min_order_krw=0.0, size_order_at=size, next_visit=visit)
        fills += r.n_trades
        cash, units, basis = r.final_cash, r.final_units, r.final_basis
        if stop == n - 1:
            parts.append(r.equity)
            break
        parts.append(r.equity[:-1])  # the bar `stop` itself is the next run's first
        start = stop
        checkpoint = Checkpoint(stop, _digest(params, bars, per_bar, stop), cash, units, basis, fills, sizer._last,
                                sizer._basis, dict(sizer._realized_by_day), np.concatenate(parts))
    equity = np.concatenate(parts)
    peak = np.maximum.accumulate(equity)  # as the engine measures it over one run
    return Replay(equity, float(equity[-1]), float(np.max(1.0 - equity / peak)), fills, checkpoint)


@dataclass(frozen=True)
class Task:
    """One replay to run: :func:`replay_decisions`'s arguments."""

    bars: npt.NDArray[np.float64]
    decisions: npt.NDArray[np.float64]
    limits: RiskLimits
    market: Market
    starting_krw: float
    resume: Checkpoint | None


PARALLEL_MIN_BARS = 20_000  # below this, a second process costs more than it saves


def _work(task: Task) -> int:
    """The bars a task will replay: after its checkpoint (when that holds: a replay from the first bar
    otherwise, which this under-counts)."""
    return len(task.bars) - (task.resume.bar if task.resume is not None and task.resume.bar < len(task.bars) else 0)


def _run(task: Task) -> Replay | None:
    return replay_decisions(task.bars, task.decisions, limits=task.limits, market=task.market,
                            starting_krw=task.starting_krw, resume=task.resume)


def replay_all(tasks: Sequence[Task]) -> list[Replay | None]:
    """Every task's :func:`replay_decisions`, in order. With two or more cores and enough bars, a forked child
    runs about half of them (by bars) while this process runs the rest: the replays are independent and
    CPU-bound (the Decimal gate), so the replays of a cold year-long report take about half the time there (a
report going on from its checkpoints replays a day or two: one process). The child computes with
    the same code on the same inputs — the same floats — and hands its results back pickled; if it fails in
    any way, this process runs its share too."""
    cores = os.cpu_count() or 1
    if cores < 2 or len(tasks) < 2 or sum(_work(t) for t in tasks) < PARALLEL_MIN_BARS or not hasattr(os, "fork"):
        return [_run(t) for t in tasks]
    order = sorted(range(len(tasks)), key=lambda i: -_work(tasks[i]))
    mine: list[int] = []
    theirs: list[int] = []
    load = [0, 0]
    for i in order:  # the longest first, each to the less loaded side
        side = 0 if load[0] <= load[1] else 1
        (mine if side == 0 else theirs).append(i)
        load[side] += _work(tasks[i])
    results: list[Replay | None] = [None] * len(tasks)
    got = _in_child([tasks[i] for i in theirs])
    for i in mine:
        results[i] = _run(tasks[i])
    done = got()
    for k, i in enumerate(theirs):
        results[i] = done[k] if done is not None else _run(tasks[i])
    return results


def _in_child(tasks: list[Task]) -> Any:
    """Start ``tasks`` in a forked child; returns a function that waits for their results (None: the child
    failed, run them here)."""
    import pickle

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, write, and leave without running any of the parent's exit handlers
        code = 1
        try:
            os.close(read_fd)
            data = pickle.dumps([_run(t) for t in tasks], protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)

    def wait() -> list[Replay | None] | None:
        with os.fdopen(read_fd, "rb") as inp:
            data = inp.read()
        _, status = os.waitpid(pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        try:
            loaded: list[Replay | None] = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError):
            return None
        return loaded if len(loaded) == len(tasks) else None

    return wait
