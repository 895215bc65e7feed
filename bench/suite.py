"""Run the benchmark suite (``bench/run``): every target of issue 7, then a summary table.

    bench/run                      every benchmark (about 3 minutes on two cores)
    bench/run startup cycle        only these sections (startup, cycle, history, backtest, memory, csv, candles,
                                   portfolio)
    bench/run --markdown FILE      also write the results as a Markdown section (for docs/BENCHMARKS.md)
    bench/run --rows N             trades rows for the history benchmark (default 1,000,000)

Exit code 0 when every target passes, 1 when one is missed, 2 when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _util import PY, Section, create_database, fake_anthropic, init_db, postgres, simulator

SECTIONS = ("startup", "cycle", "history", "backtest", "memory", "csv", "candles", "portfolio", "scorecard")


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    py = subprocess.run([PY, "-c", "import sys; print(sys.version.split()[0])"], check=False, capture_output=True, text=True).stdout.strip()
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({model}); Python {py}; "
            f"{platform.system()} {platform.release()}; load average at start {load()}")


def load() -> str:
    """The 1-minute load average: other work on the machine competes with every figure."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def summary(sections: list[Section]) -> list[tuple[str, str, str, str]]:
    rows = []
    for s in sections:
        for r in s.results:
            verdict = "info" if r.passed is None else ("PASS" if r.passed else "FAIL")
            rows.append((r.name, r.figure, r.target, verdict))
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    w = [max(len(r[i]) for r in rows + [("benchmark", "figure", "target", "result")]) for i in range(4)]
    w[1] = min(w[1], 70)
    line = f"{'benchmark':<{w[0]}} | {'figure':<{w[1]}} | {'target':<{w[2]}} | result"
    print("\n" + line)
    print("-" * len(line))
    for name, fig, tgt, verdict in rows:
        print(f"{name:<{w[0]}} | {fig:<{w[1]}} | {tgt:<{w[2]}} | {verdict}")


def markdown(sections: list[Section], header: str, total_s: float) -> str:
    out = [f"Run: {header}; suite wall time {total_s:.0f} s.", "",
           "| benchmark | figure | target | result |", "| --- | --- | --- | --- |"]
    for s in sections:
        for r in s.results:
            verdict = "info" if r.passed is None else ("**PASS**" if r.passed else "**FAIL**")
            fig = r.figure + (f" ({r.note})" if r.note else "")
            out.append(f"| {r.name} | {fig.replace('|', '/')} | {r.target} | {verdict} |")
    out.append("")
    for s in sections:
        if s.details:
            out += [f"**{s.title}**", ""] + [f"- {d}" for d in s.details] + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="trades rows for the history benchmark")
    parser.add_argument("--markdown", type=Path, help="write the results as Markdown to this file")
    args = parser.parse_args(argv)
    wanted = tuple(args.sections) or SECTIONS
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    started = time.perf_counter()
    header = machine()
    print(f"tradebot benchmarks — {header}", flush=True)
    # Every figure is a steady-state run: the bot's bytecode compiled, as a wheel install or any earlier run leaves
    # it. An editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE set (as on the CI machines) each
    # process would otherwise recompile every tradebot module it imports (10-60 ms a command here).
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "tradebot"), quiet=1)

    import bench_backtest
    import bench_candles
    import bench_csv
    import bench_cycle
    import bench_history
    import bench_portfolio
    import bench_scorecard
    import bench_startup
    from seed_trades import seed  # bench/seed_trades.py

    sections: list[Section] = []
    broken: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="tradebot-bench-"))
    servers = []
    try:
        with postgres(fast_unsafe=False) as pg:
            sim = simulator()
            servers.append(sim)
            requests_log = workdir / "anthropic-requests.jsonl"
            fake = fake_anthropic(requests_log)
            servers.append(fake)
            mem: dict[str, int] = {}

            def attempt(name: str, fn: object) -> None:
                try:
                    fn()  # type: ignore[operator]
                except Exception:  # noqa: BLE001 — one broken benchmark must not hide the others
                    traceback.print_exc()
                    broken.append(name)
                    s = Section(name)
                    s.add(name, "could not run (traceback above)", "—", False)
                    sections.append(s)

            if "startup" in wanted:
                def startup() -> None:
                    url = create_database(pg, "small")
                    init_db(url, workdir)
                    seed(url, 2000)
                    sections.append(bench_startup.bench(workdir, url))
                attempt("startup", startup)
            if "cycle" in wanted or "memory" in wanted:
                def cycle() -> None:
                    url = create_database(pg, "cycle")
                    init_db(url, workdir)
                    sec, prompt, m = bench_cycle.bench(workdir, url, sim.url, fake.url, requests_log)
                    mem.update(m)
                    if "cycle" in wanted:
                        sections.extend([sec, prompt])
                attempt("cycle", cycle)
            if "history" in wanted:
                def history() -> None:
                    url = create_database(pg, "history")
                    init_db(url, workdir)
                    sections.append(bench_history.bench(workdir, url, sim.url, args.rows, pg))
                attempt("history", history)
            if "backtest" in wanted or "memory" in wanted:
                def backtest() -> None:
                    sec, m = bench_backtest.bench(workdir, "backtest" in wanted)
                    mem.update(m)
                    if "backtest" in wanted:
                        sections.append(sec)
                attempt("backtest", backtest)
            if "memory" in wanted and mem:
                sections.append(bench_backtest.memory_section(mem))
            if "csv" in wanted:
                attempt("csv", lambda: sections.append(bench_csv.bench(workdir)))
            if "candles" in wanted:
                def candles() -> None:
                    url = create_database(pg, "candles")
                    init_db(url, workdir)
                    sections.append(bench_candles.bench(url))
                attempt("candles", candles)
            if "portfolio" in wanted:
                attempt("portfolio", lambda: sections.append(bench_portfolio.bench(workdir, pg, fake.url, requests_log)))
            if "scorecard" in wanted:
                attempt("scorecard", lambda: sections.append(bench_scorecard.bench(workdir, pg)))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    total = time.perf_counter() - started
    header += f", at the end {load()}"
    rows = summary(sections)
    print_table(rows)
    print(f"\nsuite wall time {total:.0f} s")
    if args.markdown:
        args.markdown.write_text(markdown(sections, header, total), encoding="utf-8")
        print(f"wrote {args.markdown}")
    if broken:
        return 2
    return 1 if any(r[3] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
