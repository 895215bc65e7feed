"""The live-mode test stack shared by the end-to-end, doctor and reliability suites: the Upbit simulator,
the fake Anthropic API and the fake Telegram API on loopback threads, plus the environment that points a
``tradebot`` subprocess at them (and at the test database)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.telegram_server import FakeTelegram
from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer


@contextmanager
def live_services(tb_env: dict[str, str], metrics: Path, *, access: str, secret: str, anthropic_key: str,
                  bot_token: str, sim_markets: tuple[str, ...] = ("KRW-BTC",), **extra_env: str) -> Iterator[tuple[SimulatorServer, FakeAnthropic, FakeTelegram, dict[str, str]]]:
    """Start the three fakes (the simulator serving ``sim_markets``); yield them with the CLI environment
    (live mode, every key set)."""
    metrics.mkdir(exist_ok=True)
    with SimulatorServer(SimulatorConfig(port=0, access_key=access, secret_key=secret, markets=sim_markets)) as sim, \
            FakeAnthropic(api_key=anthropic_key) as model, FakeTelegram(token=bot_token) as telegram:
        env = {**tb_env, "TRADEBOT_MODE": "live", "UPBIT_API_URL": sim.url, "UPBIT_ACCESS_KEY": access,
               "UPBIT_SECRET_KEY": secret, "ANTHROPIC_API_KEY": anthropic_key, "ANTHROPIC_BASE_URL": model.url,
               "TELEGRAM_BOT_TOKEN": bot_token, "TELEGRAM_CHAT_ID": "4242", "TELEGRAM_API_URL": telegram.url,
               "TRADEBOT_METRICS_DIR": str(metrics), **extra_env}
        yield sim, model, telegram, env
