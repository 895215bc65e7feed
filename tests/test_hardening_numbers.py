"""Issue 10: files and numbers that must come out right even when something fails or is extreme.

* a failed metrics write leaves no ``.tradebot.prom.<pid>.tmp`` behind (the write itself fails, or the rename);
* the independent numeric checks (exact rational arithmetic for P&L) live in test_pnl.py and
  test_strategy_backtest.py; the CSV inputs in test_backtest_cmd.py and test_simulator.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tradebot.metrics import MAIN_FILE, RunInfo, write_metrics
from tradebot.models import Market

ROOT = Path(__file__).resolve().parents[1]
RUN = RunInfo(market=Market("KRW-BTC"), mode="paper", finished_at=1_700_000_000.0, success=True, duration_s=1.5)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_failed_rename_removes_the_temporary_metrics_file(tmp_path: Path) -> None:
    # tradebot.prom is a non-empty directory: the temporary file is written, then os.replace fails.
    (tmp_path / MAIN_FILE).mkdir()
    (tmp_path / MAIN_FILE / "keep").write_text("x")
    for _ in range(3):
        with pytest.raises(OSError):
            write_metrics(tmp_path, RUN, None)
    assert leftovers(tmp_path) == []
    assert (tmp_path / MAIN_FILE / "keep").read_text() == "x"


def test_a_failed_write_removes_the_temporary_metrics_file(tmp_path: Path) -> None:
    # A file size limit (a full disk behaves the same): the temporary file is created, writing it fails (EFBIG).
    code = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from tradebot.metrics import RunInfo, write_metrics
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write returns EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
        run = RunInfo(market="KRW-BTC", mode="paper", finished_at=1.0, success=True, duration_s=1.0)
        try:
            write_metrics(Path({str(tmp_path)!r}), run, None)
        except OSError as e:
            print("OSError", e.errno)
        else:
            print("written")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OSError"), r.stdout
    assert leftovers(tmp_path) == []
    assert not (tmp_path / MAIN_FILE).exists()
