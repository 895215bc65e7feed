"""A long candle download shows its progress on a terminal, and only there (issue 12): nothing under cron (no
terminal) or with ``--format json``. The real CLI with its stderr on a pseudo-terminal, against the simulator."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer


def run(args: list[str], env: dict[str, str], *, tty: bool) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m tradebot ARGS``, stderr on a pseudo-terminal if ``tty``."""
    if not tty:
        r = subprocess.run([sys.executable, "-m", "tradebot", *args], env=env, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr
    leader, follower = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "tradebot", *args], env=env, stdout=subprocess.PIPE,
                          stderr=follower, text=True) as p:
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        out = p.stdout.read() if p.stdout else ""
        code = p.wait(timeout=120)
    os.close(leader)
    return code, out, b"".join(chunks).decode()


def test_progress_on_a_terminal_only(tb_env: dict[str, str]) -> None:
    with SimulatorServer(SimulatorConfig(port=0, history_hours=24 * 150)) as sim:
        env = {**tb_env, "UPBIT_API_URL": sim.url}
        code, out, err = run(["backtest", "--days", "100"], env, tty=True)
        assert code == 0 and out.startswith("Backtest of KRW-BTC"), err
        # 100 days and the 248-hour warm-up: 2,648 hours in chunks of 2,000.
        assert "fetching KRW-BTC candles: 2,000 of 2,648 hours" in err
        assert err.endswith("\rfetching KRW-BTC candles: 2,648 of 2,648 hours\r\n")  # the line is ended
        # A second run finds everything cached: nothing to fetch, nothing shown.
        code, _, err = run(["backtest", "--days", "100"], env, tty=True)
        assert code == 0 and "fetching" not in err
        code, out, err = run(["backtest", "--days", "120", "--format", "json"], env, tty=True)
        assert code == 0 and out.startswith("{") and "fetching" not in err
        code, out, err = run(["backtest", "--days", "140"], env, tty=False)
        assert code == 0 and "fetching" not in err
