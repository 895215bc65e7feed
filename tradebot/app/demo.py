"""``tradebot demo``: the main job on an embedded default, with nothing leaving this machine.

It starts (or reuses) the embedded PostgreSQL in the state directory, creates the schema, starts the
Upbit simulator on a free loopback port, and runs ``doctor``, one paper ``run-cycle`` and ``trades list``
against them — the advisor is ``claude`` only if an Anthropic key is configured, else ``rules``. Paper mode
is forced: a demo never trades real money whatever the env file says.

The demo trades a three-market paper portfolio (one shared KRW balance): a configured list of several
markets is used as it is; a single configured market is joined by two of KRW-BTC, KRW-ETH and KRW-XRP, with
the exposure and open-position limits widened to three markets' worth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

DEMO_MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-XRP")


def run_demo(settings: Any, *, install_postgres: bool = False) -> Iterator[tuple[str, Any]]:
    """Yield ``(kind, payload)`` events for the CLI to render: "info" lines, "checks", "cycle", "trades"."""
    from tradebot.app.trading import run_cycle_once
    from tradebot.exchange.simulator import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, SimulatorConfig, SimulatorServer
    from tradebot.infra.localpg import LocalPostgres, find_bindir
    from tradebot.infra.localpg import install_postgres as install
    from tradebot.store.db import describe_target, migrate, open_checked
    from tradebot.store.trades import TradeFilter, list_trades

    url = settings.database_url
    if url is None:
        if find_bindir() is None and install_postgres:
            yield "info", "PostgreSQL server binaries not found: installing Debian's postgresql package…"
            install()
        server = LocalPostgres(settings.state_dir / "postgres")
        url = server.start()
        yield "info", f"embedded PostgreSQL: {describe_target(url)} (data in {server.data}; only this unix user can connect)"
    result = migrate(url)
    yield "info", f"schema version {result.after}" + (f" ({', '.join(result.applied)} applied)" if result.applied else ", up to date")
    from tradebot.models import Market

    markets = settings.markets
    if len(markets) == 1:
        markets = (markets[0], *[Market(m) for m in DEMO_MARKETS if m != markets[0]][:2])
    config = SimulatorConfig(port=0, access_key=DEFAULT_ACCESS_KEY, secret_key=DEFAULT_SECRET_KEY, markets=markets)
    with SimulatorServer(config) as sim:
        yield "info", f"Upbit simulator: {sim.url} (markets {', '.join(markets)})"
        demo = dataclasses.replace(
            settings, mode="paper", upbit_api_url=sim.url,
            upbit_access_key=None, upbit_secret_key=None, market=markets[0], markets=markets,
            max_exposure_krw=max(settings.max_exposure_krw, settings.max_position_krw * len(markets)),
            max_open_positions=max(settings.max_open_positions, len(markets)),
            metrics_dir=settings.metrics_dir or settings.state_dir / "metrics")
        assert demo.metrics_dir is not None
        demo.metrics_dir.mkdir(parents=True, exist_ok=True)
        from tradebot.app.doctor import check_settings

        yield "checks", check_settings(demo)
        yield "cycle", run_cycle_once(demo)
        with open_checked(url) as conn:
            yield "trades", list_trades(conn, TradeFilter(limit=10))
