"""Shared pieces of the benchmark suite: timed child processes, the servers a benchmark needs, results.

Every figure is measured on a *fresh child process* run the way a user or cron runs it (the console script
``tradebot`` of the interpreter running the suite), with ``os.wait4`` giving that one child's wall time and
peak RSS (``ru_maxrss``). Servers (PostgreSQL, the Upbit simulator, the fake Anthropic API) run as separate
processes, so their CPU shows up as competition on the same cores, as it would on a real two-core box.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
# How a user runs tradebot: the console script installed next to this interpreter (`pip install -e .` puts
# it there), else the one on PATH, else `python -m tradebot`.
_SCRIPT = Path(PY).parent / "tradebot"
TRADEBOT: list[str] = ([str(_SCRIPT)] if _SCRIPT.exists() else
                       [shutil.which("tradebot")] if shutil.which("tradebot") else [PY, "-m", "tradebot"])  # type: ignore[list-item]

# Variables a developer's shell may carry that would change what tradebot does; every run starts without them.
_SCRUB = ("DATABASE_URL", "UPBIT_", "ANTHROPIC_", "TELEGRAM_", "TRADEBOT_", "PYTHON")


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    """One line of the summary table: a figure, its target, and whether it is met (None: info only)."""

    name: str
    figure: str
    target: str
    passed: bool | None
    note: str = ""


@dataclass
class Section:
    title: str
    results: list[Result] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, name: str, figure: str, target: str, passed: bool | None, note: str = "") -> Result:
        r = Result(name, figure, target, passed, note)
        self.results.append(r)
        mark = "info" if passed is None else ("PASS" if passed else "FAIL")
        print(f"  {name}: {figure}   target {target}   {mark}" + (f"   ({note})" if note else ""), flush=True)
        return r

    def say(self, line: str) -> None:
        self.details.append(line)
        print(f"  {line}", flush=True)


# ------------------------------------------------------------------------------------------- processes
@dataclass
class Run:
    wall: float  # seconds, fork to exit
    code: int
    maxrss: int  # bytes, this child only
    stdout: str
    stderr: str


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(extra)
    return env


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
        timeout: float = 300.0) -> Run:
    """Run ``cmd`` to completion; wall time and peak RSS of exactly this child (``os.wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        p = subprocess.Popen(list(cmd), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        timer = threading.Timer(timeout, lambda: os.kill(p.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        p.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
        out.seek(0)
        err.seek(0)
        return Run(wall, p.returncode, usage.ru_maxrss * 1024, out.read().decode(errors="replace"),
                   err.read().decode(errors="replace"))


def check(r: Run, what: str) -> Run:
    if r.code != 0:
        raise RuntimeError(f"{what} exited {r.code}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def fmt_s(x: float) -> str:
    return f"{x:.3f} s"


def fmt_mb(b: float) -> str:
    return f"{b / 1e6:.0f} MB"


class Server:
    """A server child process that prints its URL on its first lines; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, cmd: Sequence[str], marker: str, *, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd, text=True)
        self.url = ""
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if marker in line:
                self.url = line.split(marker, 1)[1].split()[0]
                break
        if not self.url:
            self.stop()
            raise RuntimeError(f"{cmd[0]} did not start: {''.join(seen)[-1000:]}")
        # Keep draining its output so a chatty server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def simulator(seed: int = 42) -> Server:
    """The Upbit simulator (``tradebot.exchange.simulator``) as its own process on a free loopback port."""
    # The markets of bench/seed_trades.py, so that `pnl` prices every seeded market at the exchange.
    return Server([PY, "-m", "tradebot.exchange.simulator", "--port", "0", "--seed", str(seed),
                   "--markets", "KRW-BTC,KRW-ETH,KRW-XRP"],
                  "listening on ", env=clean_env(), cwd=ROOT)


def fake_anthropic(requests_log: Path) -> Server:
    """The fake Anthropic Messages API (answers hold at once, zero latency) as its own process."""
    return Server([PY, "-m", "tests.fakes.anthropic_server", "--port", "0", "--requests-log", str(requests_log)],
                  "listening on ", env=clean_env(), cwd=ROOT)


@contextmanager
def postgres(fast_unsafe: bool = False) -> Iterator[Any]:
    """A throwaway PostgreSQL cluster (``tradebot.infra.localpg``) in a temp dir, removed afterwards."""
    from tradebot.infra.localpg import LocalPostgres, find_bindir, install_postgres

    bindir = find_bindir() or install_postgres()
    base = Path(tempfile.mkdtemp(prefix="tradebot-bench-pg-"))
    os.chmod(base, 0o755)  # as root the server runs as `postgres`, which must reach base/pg
    server = LocalPostgres(base / "pg", bindir=bindir, fast_unsafe=fast_unsafe)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop("immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


def create_database(server: Any, name: str) -> str:
    """A new empty database on ``server``; returns its URL."""
    import psycopg

    with psycopg.connect(server.admin_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.admin_url(name)


def init_db(url: str, workdir: Path) -> None:
    check(run([*TRADEBOT, "init-db"], env=clean_env(DATABASE_URL=url), cwd=workdir), "tradebot init-db")


def imported_modules(cmd_args: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[Run, set[str]]:
    """Run ``python -X importtime -m tradebot ARGS`` and return the top-level packages it imported."""
    r = run([PY, "-X", "importtime", "-m", "tradebot", *cmd_args], env=env, cwd=cwd)
    mods: set[str] = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                mods.add(name.split(".")[0])
    return r, mods


HEAVY = ("anthropic", "pyupbit", "pandas", "numpy", "psycopg", "requests", "jwt", "prometheus_client")
