"""The Prometheus textfile exporter (for node_exporter's textfile collector).

Two files in ``TRADEBOT_METRICS_DIR``, each written atomically (temporary file + rename):

* ``tradebot.prom`` on every run: the run itself (time, success 0/1, duration), the position and equity it
  saw, and totals recomputed from the database — decisions by action, trades by side and status, fees, LLM
  tokens and cost — so they are monotonic across cron processes;
* ``tradebot_last_success.prom`` only when a run succeeded: ``tradebot_last_success_timestamp_seconds``.
  Because a failed run never rewrites it, "no success for 2h10m" is a plain alert on its value.

Counters are emitted from a custom collector (no ``_created`` samples: meaningless for a short process).
Labels are few and bounded: ticker, mode, and small enums.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.models import RunInfo

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

MAIN_FILE = "tradebot.prom"
SUCCESS_FILE = "tradebot_last_success.prom"


class _Collector:
    def __init__(self, run: RunInfo | None, totals: dict[str, list[tuple[Any, ...]]]) -> None:
        self.run = run
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        run = self.run
        if run is not None:
            labels = ["ticker", "mode"]
            values = [run.market, run.mode]
            for name, doc, value in (
                ("tradebot_last_run_timestamp_seconds", "When the last run finished (unix time).", run.finished_at),
                ("tradebot_last_run_success", "1 if the last run succeeded, 0 if it failed.", 1.0 if run.success else 0.0),
                ("tradebot_last_run_duration_seconds", "Wall time of the last run.", run.duration_s),
            ):
                g = GaugeMetricFamily(name, doc, labels=labels)
                g.add_metric(values, value)
                yield g
            for name, doc, dec in (
                ("tradebot_position_volume", "Coin volume held (free + locked) at the last run.", run.position_volume),
                ("tradebot_equity_krw", "KRW + coin value at the last run.", run.equity_krw),
                ("tradebot_price_krw", "Last trade price seen by the last run.", run.price_krw),
                ("tradebot_daily_realized_loss_krw", "Realized loss since 00:00 UTC (KRW, 0 when in profit).",
                 run.daily_realized_loss_krw),
                ("tradebot_daily_loss_limit_krw", "TRADEBOT_DAILY_LOSS_LIMIT_KRW (0: no limit).", run.daily_loss_limit_krw),
            ):
                if dec is not None:
                    g = GaugeMetricFamily(name, doc, labels=labels)
                    g.add_metric(values, float(dec))
                    yield g

        c = CounterMetricFamily("tradebot_decisions", "Decisions recorded, by the action the risk gate allowed.",
                                labels=["ticker", "mode", "action"])
        for market, mode, action, n in self.totals["decisions_by_action"]:
            c.add_metric([market, mode, action], n)
        yield c
        c = CounterMetricFamily("tradebot_filtered_decisions", "Cycles held by the backtest filter.", labels=["ticker", "mode"])
        for market, mode, n in self.totals["filtered_decisions"]:
            c.add_metric([market, mode], n)
        yield c
        c = CounterMetricFamily("tradebot_cycle_errors", "Decisions recorded with an error (failed cycles).", labels=["ticker", "mode"])
        errors = {(t, m): n for t, m, n in self.totals["errors"]}
        if run is not None:
            # An explicit 0 so that increase() sees the first error (a series cannot start at 1 unnoticed).
            errors.setdefault((run.market, run.mode), 0)
        for (market, mode), n in sorted(errors.items()):
            c.add_metric([market, mode], n)
        yield c
        c = CounterMetricFamily("tradebot_trades", "Trades recorded, by side and status.", labels=["ticker", "mode", "side", "status"])
        for market, mode, side, status, n in self.totals["trades_by_side_status"]:
            c.add_metric([market, mode, side, status], n)
        yield c
        c = CounterMetricFamily("tradebot_fees_krw", "Fees paid on completed trades, KRW.", labels=["ticker", "mode"])
        for market, mode, fee in self.totals["fees"]:
            c.add_metric([market, mode], float(fee))
        yield c
        tokens = CounterMetricFamily("tradebot_llm_tokens", "LLM tokens used, by kind.", labels=["ticker", "mode", "kind"])
        cost = CounterMetricFamily("tradebot_llm_cost_usd", "Estimated LLM cost, USD.", labels=["ticker", "mode"])
        for market, mode, inp, out, cread, cwrite, usd in self.totals["llm_usage"]:
            for kind, n in (("input", inp), ("output", out), ("cache_read", cread), ("cache_write", cwrite)):
                tokens.add_metric([market, mode, kind], n)
            cost.add_metric([market, mode], float(usd))
        yield tokens
        yield cost


def _write(path: Path, registry: Any) -> None:
    """Atomic write with fsync (prometheus_client's own writer does not fsync)."""
    from prometheus_client.exposition import generate_latest

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not *.prom: node_exporter ignores it
    data = generate_latest(registry)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A full disk or an unwritable target must not leave one stray file per cron run behind.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_metrics(directory: Path, run: RunInfo | None, totals: dict[str, list[tuple[Any, ...]]] | None) -> list[Path]:
    """Write ``tradebot.prom`` (and ``tradebot_last_success.prom`` when ``run.success``). Raises OSError."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    empty: dict[str, list[tuple[Any, ...]]] = defaultdict(list)  # no database: no totals, the run still counts
    registry = CollectorRegistry()
    registry.register(_Collector(run, totals if totals is not None else empty))
    written = [directory / MAIN_FILE]
    _write(written[0], registry)
    if run is not None and run.success:
        last = run

        class _Success:
            def collect(self) -> Iterator[Metric]:
                g = GaugeMetricFamily("tradebot_last_success_timestamp_seconds", "When the last successful run finished (unix time).",
                                      labels=["ticker", "mode"])
                g.add_metric([last.market, last.mode], last.finished_at)
                yield g

        reg2 = CollectorRegistry()
        reg2.register(_Success())
        written.append(directory / SUCCESS_FILE)
        _write(written[1], reg2)
    return written
