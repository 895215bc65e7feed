"""Target 1 — fast to start: ``tradebot --help`` against a minimal Typer app, ``trades list`` on a small
database, and which heavy modules each command path imports."""

from __future__ import annotations

from pathlib import Path

from _util import (
    BENCH,
    HEAVY,
    PY,
    TRADEBOT,
    Section,
    check,
    clean_env,
    fmt_s,
    imported_modules,
    median,
    run,
)

HELP_RUNS = 21
LIST_RUNS = 11
HELP_RATIO = 1.2
LIST_TARGET_S = 0.35


def bench(workdir: Path, small_db_url: str) -> Section:
    """``small_db_url``: a database with the schema and a few thousand trades."""
    sec = Section("1. start-up")
    print(f"\n== {sec.title}", flush=True)
    env = clean_env()
    minimal = [PY, str(BENCH / "minimal_typer_app.py"), "--help"]
    tb_help = [*TRADEBOT, "--help"]
    for cmd in (minimal, tb_help):  # warm the page cache and .pyc files; not counted
        check(run(cmd, env=env, cwd=workdir), " ".join(cmd))
    base, ours = [], []
    for _ in range(HELP_RUNS):  # interleaved, so drift in machine load hits both alike
        base.append(check(run(minimal, env=env, cwd=workdir), "minimal --help").wall)
        ours.append(check(run(tb_help, env=env, cwd=workdir), "tradebot --help").wall)
    b, o = median(base), median(ours)
    sec.say(f"minimal Typer app --help: median {fmt_s(b)} of {HELP_RUNS} (min {fmt_s(min(base))}); "
            f"tradebot --help: median {fmt_s(o)} (min {fmt_s(min(ours))})")
    sec.add("tradebot --help / minimal Typer --help", f"{o / b:.2f}× ({fmt_s(o)} vs {fmt_s(b)})",
            f"≤ {HELP_RATIO}×", o / b <= HELP_RATIO)

    list_env = clean_env(DATABASE_URL=small_db_url)
    cmd = [*TRADEBOT, "trades", "list", "--limit", "20"]
    first = check(run(cmd, env=list_env, cwd=workdir), "trades list")
    rows = sum(1 for line in first.stdout.splitlines() if line.strip()) - 2  # header + rule
    walls = [check(run(cmd, env=list_env, cwd=workdir), "trades list").wall for _ in range(LIST_RUNS)]
    w = median(walls)
    sec.add("trades list --limit 20 (small DB)", fmt_s(w), f"≤ {LIST_TARGET_S} s", w <= LIST_TARGET_S,
            f"median of {LIST_RUNS}, {rows} rows shown")

    # Structural: which heavy packages each path pulls in (python -X importtime -m tradebot ...).
    paths = {
        "--help": (["--help"], env, ()),
        "trades list": (["trades", "list", "--limit", "20"], list_env, ("psycopg",)),
        "pnl --at": (["pnl", "--symbol", "KRW-BTC", "--at", "100000000"], list_env, ("psycopg",)),  # seed_trades: 3 markets
    }
    ok_all = True
    for label, (args, e, allowed) in paths.items():
        r, mods = imported_modules(args, e, workdir)
        check(r, f"tradebot {' '.join(args)}")
        heavy = sorted(m for m in HEAVY if m in mods)
        bad = [m for m in heavy if m not in allowed]
        ok_all &= not bad
        sec.say(f"tradebot {label}: heavy modules imported: {', '.join(heavy) or 'none'}"
                + (f"  ← not needed: {', '.join(bad)}" if bad else ""))
    sec.add("heavy modules only where used (--help, trades list, pnl --at)",
            "ok" if ok_all else "extra imports", "none beyond what the path uses", ok_all)
    return sec
