"""The layout's rules, checked on the source: no import circle in `trading/`."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from trading import bus

ROOT = Path(__file__).resolve().parents[2]


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (at the top, in a function or for
    typing alike: a circle of any of them is a circle in the design)."""
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        graph[name] = {t for t in _imports(path) if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_trading_package():
    assert circles(import_graph(ROOT / "trading")) == []


ENTRY_FILES = (
    "data-ingestion/data_ingestion.py",
    "strategy/strategy.py",
    "risk-management/risk_management.py",
    "visualization/visualization.py",
    "monitoring/monitoring_dashboard.py",
)
ENTRY_MAX_LINES = 150


@pytest.mark.parametrize("entry", ENTRY_FILES)
def test_a_service_entry_file_is_a_thin_start_under_150_lines(entry):
    """The five service files only start their shell (`trading/services/<service>.py`): the
    logic lives in the package, where the backtest, the tests and the other services reach it."""
    lines = (ROOT / entry).read_text().splitlines()
    assert len(lines) < ENTRY_MAX_LINES, f"{entry} has {len(lines)} lines"


MODULE_MAX_LINES = 800


def test_no_module_of_the_package_is_over_800_lines():
    """A module over 800 lines holds more than one kind of thing (issue 18): split it where
    its kinds part, as hedge.py (estimators) and spread.py (the spread and its z-score) did."""
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "trading").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MODULE_MAX_LINES
    }
    assert long == {}


# The client's names re-exported by the package (loaded with redis on first use).
CLIENT = ("trading.bus.client", *(f"trading.bus.{name}" for name in sorted(bus._CLIENT)), "redis")

FORBIDDEN = {
    # importer prefix: imported prefixes it must never reach (ARCHITECTURE.md, "Layout")
    "trading.domain": (
        "trading.bus",
        "trading.strategy",
        "trading.execution",
        "trading.broker",
        "trading.services",
        "trading.ibsim",
        "trading.backtest",
        "trading.settings",
    ),
    "trading.bus.messages": CLIENT,
    "trading.bus.codec": CLIENT,
    "trading.bus.names": CLIENT,
    "trading.strategy": (*CLIENT, "trading.broker", "trading.ibsim", "trading.services"),
    "trading.execution": (*CLIENT, "trading.broker", "trading.ibsim", "trading.services"),
    "trading.broker": (*CLIENT, "trading.services"),
    # the dashboard reads Redis only, never IB; its service shell imports it, not the reverse
    "trading.dashboard": (
        "trading.broker",
        "trading.ibsim",
        "ib_async",
        "ib_insync",
        "trading.services",
    ),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def _broken(importer: str, banned: tuple[str, ...]) -> list[str]:
    broken = []
    for path in sorted((ROOT / "trading").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module != importer and not module.startswith(importer + "."):
            continue
        for name in sorted(_imports(path)):
            if any(name == b or name.startswith(b + ".") for b in banned):
                broken.append(f"{module} imports {name}")
    return broken


KNOWN: dict[str, str] = {}
"""Importer -> why it still breaks its rule (a strict xfail while a move is under way)."""


@pytest.mark.parametrize(
    "importer",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN[name], strict=True))
        if name in KNOWN
        else name
        for name in FORBIDDEN
    ],
)
def test_no_layer_imports_what_it_must_never_reach(importer):
    assert _broken(importer, FORBIDDEN[importer]) == []


PAIR_LITERALS = frozenset({"TLT", "TLTW"})
SPELLS_THE_PAIR = frozenset(
    {
        "trading/domain/pair.py",  # the default pair, the one place it is named
        "trading/domain/hedge.py",  # a label of the delta breakdown
    }
)
"""Modules still allowed to spell "TLT" or "TLTW" as a string literal (issue 18: the pair is
one `PairSpec` from configuration). The list only shrinks: a module that stops spelling them
must leave it, and no other module may start."""


def test_only_the_listed_modules_spell_the_pair_as_literals():
    spelling = set()
    for path in (ROOT / "trading").rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(
            isinstance(node, ast.Constant) and node.value in PAIR_LITERALS
            for node in ast.walk(tree)
        ):
            spelling.add(str(path.relative_to(ROOT)))
    assert sorted(spelling - SPELLS_THE_PAIR) == [], "take the symbols from the PairSpec"
    assert sorted(SPELLS_THE_PAIR - spelling) == [], "no longer spells them: drop it from the list"
