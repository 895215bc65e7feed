"""The Prometheus textfile exporter (for node_exporter's textfile collector).

Two files in ``TRADEBOT_METRICS_DIR``, each written atomically (temporary file + rename):

* ``tradebot.prom`` on every run: the run itself (time, success 0/1, duration), the position and equity it
  saw, and totals recomputed from the database — decisions by action, trades by side and status, fees, LLM
  tokens and cost — so they are monotonic across cron processes;
* ``tradebot_last_success.prom`` only when a run succeeded: ``tradebot_last_success_timestamp_seconds``.
  Because a failed run never rewrites it, "no success for 2h10m" is a plain alert on its value. A portfolio
  run (several markets) writes one series per market: the markets that succeeded get this run's time, the
  others keep the time the file already had for them, so one failing market never hides the others.

A portfolio run also writes the ``tradebot_portfolio_*`` gauges (label ``mode``): KRW free, positions at
market value (exposure), open positions, equity, the configured caps, and how many markets failed.

Counters are emitted from a custom collector (no ``_created`` samples: meaningless for a short process).
Labels are few and bounded: ticker, mode, and small enums.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.models import PortfolioInfo, RunInfo

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

MAIN_FILE = "tradebot.prom"
SUCCESS_FILE = "tradebot_last_success.prom"


class _Collector:
    def __init__(self, runs: list[RunInfo], totals: dict[str, list[tuple[Any, ...]]],
                 portfolio: PortfolioInfo | None) -> None:
        self.runs = runs
        self.totals = totals
        self.portfolio = portfolio

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        labels = ["ticker", "mode"]
        for name, doc, field in (
            ("tradebot_last_run_timestamp_seconds", "When the last run finished (unix time).", "finished_at"),
            ("tradebot_last_run_success", "1 if the last run succeeded, 0 if it failed.", "success"),
            ("tradebot_last_run_duration_seconds", "Wall time of the last run.", "duration_s"),
        ):
            if self.runs:
                g = GaugeMetricFamily(name, doc, labels=labels)
                for run in self.runs:
                    g.add_metric([run.market, run.mode], float(getattr(run, field)))
                yield g
        for name, doc, field in (
            ("tradebot_position_volume", "Coin volume held (free + locked) at the last run.", "position_volume"),
            ("tradebot_equity_krw", "KRW + coin value at the last run.", "equity_krw"),
            ("tradebot_price_krw", "Last trade price seen by the last run.", "price_krw"),
            ("tradebot_daily_realized_loss_krw", "Realized loss since 00:00 UTC (KRW, 0 when in profit).",
             "daily_realized_loss_krw"),
            ("tradebot_daily_loss_limit_krw", "TRADEBOT_DAILY_LOSS_LIMIT_KRW (0: no limit).", "daily_loss_limit_krw"),
        ):
            known = [run for run in self.runs if getattr(run, field) is not None]
            if known:
                g = GaugeMetricFamily(name, doc, labels=labels)
                for run in known:
                    g.add_metric([run.market, run.mode], float(getattr(run, field)))
                yield g
        yield from self._portfolio()
        yield from self._counters()

    def _portfolio(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        p = self.portfolio
        if p is None:
            return
        for name, doc, value in (
            ("tradebot_portfolio_krw_free", "Free KRW after the last portfolio run's orders.", p.krw_free),
            ("tradebot_portfolio_exposure_krw", "Every market's position at the last price, together (KRW).", p.exposure_krw),
            ("tradebot_portfolio_open_positions", "Markets holding a position worth at least the minimum order.", p.open_positions),
            ("tradebot_portfolio_equity_krw", "KRW + every position at the last price.", p.equity_krw),
            ("tradebot_portfolio_markets", "Markets the last run was configured with.", p.markets),
            ("tradebot_portfolio_markets_failed", "Markets that failed in the last run.", p.markets_failed),
            ("tradebot_portfolio_max_exposure_krw", "TRADEBOT_MAX_EXPOSURE_KRW.", p.max_exposure_krw),
            ("tradebot_portfolio_max_open_positions", "TRADEBOT_MAX_OPEN_POSITIONS.", p.max_open_positions),
            ("tradebot_portfolio_daily_realized_loss_krw", "Realized loss of all markets together since 00:00 UTC "
             "(KRW, 0 in profit).", p.daily_realized_loss_krw),
            ("tradebot_portfolio_daily_loss_limit_krw", "TRADEBOT_DAILY_LOSS_LIMIT_KRW (0: no limit).",
             p.daily_loss_limit_krw),
        ):
            if value is not None:
                g = GaugeMetricFamily(name, doc, labels=["mode"])
                g.add_metric([p.mode], float(value))
                yield g

    def _counters(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

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
        for run in self.runs:
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
        yield from self._scorecard()
        yield from self._telegram()

    def _telegram(self) -> Iterator[Metric]:
        """Issue 14: updates `tradebot telegram` ignored (nobody else may command the bot) and commands run."""
        from prometheus_client.core import CounterMetricFamily

        ignored = CounterMetricFamily("tradebot_telegram_updates_ignored", "Telegram updates ignored without a reply "
                                      "(other chats and users, edited or forwarded messages, foreign keyboards), by why.",
                                      labels=["reason"])
        for reason, n in self.totals.get("telegram_ignored", []):
            ignored.add_metric([reason], n)
        yield ignored
        commands = CounterMetricFamily("tradebot_telegram_commands", "Commands from the owner's Telegram chat, by "
                                       "command and outcome (done, expired, refused).", labels=["command", "outcome"])
        for command, outcome, n in self.totals.get("telegram_commands", []):
            commands.add_metric([command, outcome], n)
        yield commands

    def _scorecard(self) -> Iterator[Metric]:
        """Issue 13: every advisor's decisions, the +24 h hit rate, the model's bill against its budget."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        c = CounterMetricFamily("tradebot_advisor_decisions", "Decisions by advisor and role (acting or shadow).",
                                labels=["ticker", "mode", "advisor", "role"])
        for market, mode, advisor, role, n in self.totals["advisor_decisions"]:
            c.add_metric([market, mode, advisor, role], n)
        yield c
        rate = GaugeMetricFamily("tradebot_advisor_hit_rate_24h", "Share of the last 30 days' decisions right at +24 h "
                                 "(tradebot advisors report defines right).", labels=["ticker", "mode", "advisor"])
        scored = GaugeMetricFamily("tradebot_advisor_scored_24h", "The last 30 days' decisions scored at +24 h.",
                                   labels=["ticker", "mode", "advisor"])
        for market, mode, advisor, n, hits in self.totals["advisor_hits_24h"]:
            rate.add_metric([market, mode, advisor], hits / n)
            scored.add_metric([market, mode, advisor], n)
        yield rate
        yield scored
        fallbacks = GaugeMetricFamily("tradebot_llm_budget_fallbacks_today", "Acting decisions made by the rules "
                                      "today (UTC) because the model budget would have been passed.",
                                      labels=["ticker", "mode"])
        for market, mode, n in self.totals["budget_fallbacks_today"]:
            fallbacks.add_metric([market, mode], n)
        yield fallbacks
        for today, month in self.totals["llm_spend_now"]:
            yield GaugeMetricFamily("tradebot_llm_spend_today_usd", "Model spend since 00:00 UTC (every market and mode).",
                                    value=float(today))
            yield GaugeMetricFamily("tradebot_llm_spend_month_usd", "Model spend since the 1st of the month (UTC).",
                                    value=float(month))
            caps = dict(zip(("day", "month"), self.totals["llm_caps"][0] if self.totals["llm_caps"] else (None, None),
                            strict=True))
            budget = GaugeMetricFamily("tradebot_llm_budget_usd", "TRADEBOT_LLM_DAILY/MONTHLY_BUDGET_USD (absent: no cap).",
                                       labels=["period"])
            left = GaugeMetricFamily("tradebot_llm_budget_remaining_usd", "The budget minus what was spent in its period.",
                                     labels=["period"])
            for period, spent in (("day", today), ("month", month)):
                cap = caps[period]
                if cap is not None:
                    budget.add_metric([period], float(cap))
                    left.add_metric([period], float(cap - spent))
            yield budget
            yield left


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


def write_metrics(directory: Path, run: RunInfo | Sequence[RunInfo] | None, totals: dict[str, list[tuple[Any, ...]]] | None,
                  portfolio: PortfolioInfo | None = None) -> list[Path]:
    """Write ``tradebot.prom`` (and ``tradebot_last_success.prom`` for the runs that succeeded). ``run`` is
    the one market's run, or one per market of a portfolio run. Raises OSError."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    runs = [] if run is None else [run] if isinstance(run, RunInfo) else list(run)
    empty: dict[str, list[tuple[Any, ...]]] = defaultdict(list)  # no database: no totals, the run still counts
    registry = CollectorRegistry()
    registry.register(_Collector(runs, totals if totals is not None else empty, portfolio))
    written = [directory / MAIN_FILE]
    _write(written[0], registry)
    succeeded = [r for r in runs if r.success]
    if not succeeded:
        return written
    # A market that failed this run keeps the success time it already had (a portfolio run only).
    stamps = {(r.market, r.mode): r.finished_at for r in succeeded}
    if len(runs) > 1:
        for key, value in _success_stamps(directory / SUCCESS_FILE).items():
            if key in {(r.market, r.mode) for r in runs}:
                stamps.setdefault(key, value)

    class _Success:
        def collect(self) -> Iterator[Metric]:
            g = GaugeMetricFamily("tradebot_last_success_timestamp_seconds", "When the last successful run finished (unix time).",
                                  labels=["ticker", "mode"])
            for (market, mode), at in sorted(stamps.items()):
                g.add_metric([market, mode], at)
            yield g

    reg2 = CollectorRegistry()
    reg2.register(_Success())
    written.append(directory / SUCCESS_FILE)
    _write(written[1], reg2)
    return written


def _success_stamps(path: Path) -> dict[tuple[str, str], float]:
    """The success times the file holds now, by (ticker, mode); nothing when it is missing or unreadable."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
        return {(s.labels["ticker"], s.labels["mode"]): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples
                if s.name == "tradebot_last_success_timestamp_seconds" and "ticker" in s.labels and "mode" in s.labels}
    except (OSError, ValueError, KeyError):
        return {}
