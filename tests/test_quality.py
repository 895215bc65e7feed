"""Issue 11: the shape of the code base is checked, not only described.

``mypy --strict`` and ``ruff check`` run here, so the README's test command (and CI) enforces them; the
layer rules of docs/ARCHITECTURE.md are checked by reading the source: SQL only in the store, the store
importing nothing above it, the CLI imported by nobody, no oversized module, Upbit's rules defined once.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PKG = ROOT / "tradebot"
# The layers that make decisions: they take their parts as arguments and never speak to a network or a
# database themselves (docs/ARCHITECTURE.md).
DOMAIN = ["cycle.py", "risk.py", "pnl.py", "reconcile.py", "models.py", "upbit_rules.py", "portfolio.py", "portfolio_cycle.py", "shadow.py", "control.py", "market", "advisor", "scorecard"]


def sources(*under: str) -> list[Path]:
    paths = [PKG / u for u in under] if under else [PKG]
    out: list[Path] = []
    for p in paths:
        out += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return out


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def _type_only(tree: ast.Module) -> set[int]:
    """ids of the statements inside ``if TYPE_CHECKING:`` blocks (never executed)."""
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for stmt in node.body for n in ast.walk(stmt)}


def imported(path: Path, *, runtime_only: bool = False) -> set[str]:
    """Every module an ``import``/``from … import`` in the file names (function-level ones too); with
    ``runtime_only``, not those inside ``if TYPE_CHECKING:`` (annotations only)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text())
    skip = _type_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_mypy_strict_reports_no_error() -> None:
    out = _tool("mypy", "--strict", "tradebot")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_check_is_clean() -> None:
    out = _tool("ruff", "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_sql_runs_only_in_the_store() -> None:
    """The embedded server's own setup (creating the bot's role) is the one exception."""
    offenders = [f"{rel(p)}:{n}" for p in sources() if "store" not in p.relative_to(PKG).parts
                 and p != PKG / "infra" / "localpg.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\.execute\(|queries\(", line)]
    assert offenders == []


def test_the_store_imports_nothing_above_it() -> None:
    allowed = ("tradebot.store", "tradebot.models", "tradebot.errors")
    offenders = {rel(p): sorted(m for m in imported(p) if m.startswith("tradebot") and not m.startswith(allowed))
                 for p in sources("store")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_domain_modules_reach_no_database_and_no_network_library() -> None:
    """Not even for annotations: the store's ``Connection`` alias is the one name they may use for a type."""
    offenders = {rel(p): sorted({m for m in imported(p) if m.split(".")[0] in ("psycopg", "requests", "pyupbit")} |
                                {m for m in imported(p, runtime_only=True)
                                 if m.startswith(("tradebot.store.db", "tradebot.infra", "tradebot.app", "tradebot.cli"))})
                 for p in sources(*DOMAIN)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_cycle_has_no_driver_code_and_one_blind_except() -> None:
    text = (PKG / "cycle.py").read_text()
    assert "psycopg" not in text
    blind = [n for n, line in enumerate(text.splitlines(), 1) if re.search(r"except\s+(Exception|BaseException)\b|except\s*:", line)]
    assert len(blind) == 1, blind  # around the notifier: a notification never breaks a cycle
    assert "notifications never fail a cycle" in text.splitlines()[blind[0] - 1]


def test_nothing_outside_the_cli_imports_it() -> None:
    offenders = [rel(p) for p in sources() if "cli" not in p.relative_to(PKG).parts[:1] and p.name != "__main__.py"
                 and any(m == "tradebot.cli" or m.startswith("tradebot.cli.") for m in imported(p))]
    assert offenders == []


def test_backtest_does_not_reach_the_application_layer() -> None:
    offenders = {rel(p) for p in sources("backtest") for m in imported(p) if m.startswith(("tradebot.app", "tradebot.cli"))}
    assert offenders == set()


@pytest.mark.parametrize(("under", "limit"), [("", 600), ("cli", 250)])
def test_no_module_is_oversized(under: str, limit: int) -> None:
    sizes = {rel(p): len(p.read_text().splitlines()) for p in (sources(under) if under else sources())}
    assert {k: n for k, n in sizes.items() if n > limit} == {}


def test_upbit_rules_are_defined_once() -> None:
    """The simulator plays the exchange and keeps its own copy on purpose."""
    defs = [f"{rel(p)}:{n}" for p in sources() if "simulator" not in p.relative_to(PKG).parts
            for n, line in enumerate(p.read_text().splitlines(), 1)
            if re.match(r"\s*[A-Z_]*(MIN_ORDER|FEE_RATE|MIN_TOTAL)[A-Z_]*\s*(:[^=]+)?=", line)
            or re.search(r"Decimal\(\"0\.0005\"\)|Decimal\(5_?000\)", line)]
    assert defs == ["tradebot/upbit_rules.py:12", "tradebot/upbit_rules.py:13"], defs
