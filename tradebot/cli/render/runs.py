"""Rendering of what the bot did or found: a cycle's step lines, doctor's checks, reconciliation's changes,
the schema migration, the paper account and the embedded server's state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def check_lines(checks: Sequence[Any]) -> list[str]:
    """One line per doctor check: ✓ passed, ✗ failed (required), ! failed (optional); the fix after ``—``."""
    lines = []
    for c in checks:
        mark = "✓" if c.ok else ("!" if not c.required else "✗")
        line = f"{mark} {c.name}: {c.detail}"
        if not c.ok and c.fix:
            line += f" — {c.fix}"
        lines.append(line)
    return lines


def cycle_lines(report: Any, title: str) -> list[str]:
    """A cycle's report for people: the title, one ✓/✗ line per step, the outcome and how long it took."""
    from tradebot.errors import scrub

    lines = [title]
    lines += [f"{'✓' if line.ok else '✗'} {line.step}: {scrub(line.text)}" for line in report.steps]
    lines.append(f"→ {report.outcome} ({report.duration_s:.2f} s)")
    return lines


def portfolio_lines(report: Any, title: str) -> list[str]:
    """A portfolio run for people: the title, the shared steps, one block per market (its steps and
    outcome), the portfolio after the orders, and the outcome with the count of each market outcome."""
    from tradebot.errors import scrub
    from tradebot.models import plain

    def mark(line: Any) -> str:
        return f"{'✓' if line.ok else '✗'} {line.step}: {scrub(line.text)}"

    lines = [title, *(mark(line) for line in report.steps)]
    for r in report.reports:
        lines.append(f"{r.market}")
        lines += [f"  {mark(line)}" for line in r.steps]
        lines.append(f"  → {r.outcome}")
    if report.free_krw is not None:
        lines.append(f"portfolio: free {plain(report.free_krw, 0)} KRW, positions worth {plain(report.exposure_krw, 0)} KRW "
                     f"({report.open_positions} open), equity {plain(report.equity_krw, 0)} KRW")
    counts: dict[str, int] = {}
    for r in report.reports:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    lines.append(f"→ {report.outcome}: {summary} ({report.duration_s:.2f} s)")
    return lines


def portfolio_error(report: Any) -> str:
    """The one ``Error:`` line of a failed portfolio run: each failed market with its step and error."""
    from tradebot.errors import scrub

    if report.error is not None and report.failed_step is not None:
        return f"{report.failed_step} failed: {scrub(report.error)}"
    return "; ".join(f"{r.market}: {r.failed_step} failed: {scrub(r.error or '')}" for r in report.reports if r.failed)


def cycle_json(report: Any) -> str:
    """``run-cycle --json``: the report's JSON summary, credentials scrubbed."""
    import json

    from tradebot.errors import scrub

    return scrub(json.dumps(report.to_json(), indent=2))


def reconcile_lines(report: Any, *, days: int, dry_run: bool) -> list[str]:
    """One line per change, then the counts."""
    verb = "would change" if dry_run else "changed"
    lines = [f"{c.kind}: {c.client_order_id}: {c.detail}" for c in report.changes]
    lines.append(f"{len(report.changed)} row(s) {verb}; {report.checked_pending} pending checked, "
                 f"{report.checked_exchange} filled order(s) of ours on the exchange in the last {days} day(s).")
    return lines


def migration_line(result: Any, target: str) -> str:
    """What ``init-db`` did to the schema at ``target``."""
    if not result.applied:
        return f"Schema is up to date (version {result.after}) at {target}."
    if result.before is None:
        return f"Created schema version {result.after} at {target}."
    return (f"Upgraded schema from version {result.before} to {result.after} at {target} "
            f"({', '.join(result.applied)}).")


def balance_lines(balances: Sequence[Any]) -> list[str]:
    """The paper account, one currency per line (the average buy price for coins)."""
    lines = []
    for b in balances:
        avg = f"  avg buy price {b.avg_buy_price:,.0f}" if b.currency != "KRW" else ""
        lines.append(f"{b.currency:>6}  {b.free:,f}{avg}")
    return lines


def local_db_line(state: str, where: str | Path) -> str:
    """``local-db status``: running (with its URL), stopped (with its data directory) or not created yet."""
    if state == "running":
        return f"running: {where}"
    if state == "stopped":
        return f"stopped (data in {where})"
    return f"not created yet (it is created in {where} on first use)"


def config_lines(env_file: Path | None, items: Sequence[tuple[str, str]]) -> list[str]:
    """``config show``: where the settings came from, then ``NAME=value`` (secrets already masked)."""
    source = str(env_file) if env_file else "(no env file; environment only)"
    return [f"# env file: {source}", *(f"{name}={value}" for name, value in items)]
