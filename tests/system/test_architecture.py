"""The product's imports go one way, read from the source (every import statement, including
those inside functions and under ``if TYPE_CHECKING:``, so a lazy import cannot hide a cycle).

The layers, highest first (the README's Development section draws the same picture): a module
imports only modules of layers below its own. ``rules`` is pure and imports nothing of
``monitor``. The simulated gateway (``monitor/sim/``, or the flat modules it was before:
``monitor/simulator.py``, ``sim_state.py``, ``sim_protocol.py``, ``receiver.py``) is a separate
part: it imports nothing of the daemon (``rules`` at most), and only the commands that serve
it (``cli``, ``demo``) import it. Only ``monitor/gateway.py`` imports ib_async, only
``monitor/notifier.py`` imports apprise, only ``monitor/web.py`` imports aiohttp and Jinja2,
and nothing imports ``monitor.cli``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("monitor", "rules")

LAYERS: tuple[tuple[str, ...], ...] = (
    ("monitor.cli",),
    ("monitor.demo",),
    ("monitor.app",),
    ("monitor.daemon",),
    ("monitor.service", "monitor.web"),
    ("monitor.summary", "monitor.metrics", "monitor.webview", "monitor.heartbeat"),
    (
        "monitor.notifier",
        "monitor.gateway",
        "monitor.estimate",
        "monitor.report",
        "monitor.status",
        "monitor.trading_calendar",
    ),
    ("monitor.store", "monitor.settings", "monitor.logs", "monitor.systemd", "monitor.webchart"),
    ("monitor.clock",),
    ("rules",),
)
SIMULATOR_MODULES = frozenset(
    {"monitor.simulator", "monitor.sim_state", "monitor.sim_protocol", "monitor.receiver"}
)
SIMULATOR_USERS = frozenset({"monitor.cli", "monitor.demo"})
ONLY_IMPORTER = {
    "ib_async": "monitor.gateway",
    "apprise": "monitor.notifier",
    "aiohttp": "monitor.web",
    "jinja2": "monitor.web",
}

Graph = Mapping[str, frozenset[str]]


# -- reading the imports -----------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    """``monitor/sim/state.py`` -> ``monitor.sim.state``; an ``__init__`` is its package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_sources(root: Path) -> dict[str, Path]:
    """Every module of the product packages under ``root``, by dotted name."""
    return {
        module_name(path, root): path
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
    }


def imported_names(module: str, path: Path, modules: Iterable[str]) -> set[str]:
    """Every module ``module`` imports, anywhere in its file: product modules by their full
    name (``from monitor import summary`` is ``monitor.summary``), others by their top level."""
    known = set(modules)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                # the longest product module the name starts with (a symbol's module)
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                if target in known and target != module:
                    found.add(target)
            else:
                found.add(target.split(".")[0])
    return found


def import_graph(root: Path) -> dict[str, frozenset[str]]:
    """Module -> everything it imports (product modules and third-party top levels)."""
    sources = product_sources(root)
    return {
        module: frozenset(imported_names(module, path, sources))
        for module, path in sources.items()
    }


# -- the checks --------------------------------------------------------------------------------


def is_simulator(module: str) -> bool:
    """True for a module of the simulated gateway (either spelling)."""
    return module in SIMULATOR_MODULES or (module + ".").startswith("monitor.sim.")


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer (0 is the top), ``None`` when it has none."""
    if module == "rules" or module.startswith("rules."):
        return LAYERS.index(("rules",))
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    return None


def layer_violations(graph: Graph) -> list[str]:
    """Every import against the order, and every daemon module that has no layer."""
    product = set(graph)
    problems = []
    for module, imports in sorted(graph.items()):
        if module in ("monitor", "rules") or is_simulator(module):
            continue
        mine = layer_of(module)
        if mine is None:
            problems.append(f"{module} is in no layer: add it to LAYERS and the README diagram")
            continue
        for target in sorted(imports & product):
            if is_simulator(target):
                if module not in SIMULATOR_USERS:
                    problems.append(f"{module} imports the simulator ({target})")
                continue
            theirs = layer_of(target)
            rules_inside = mine == theirs == layer_of("rules")
            if theirs is not None and theirs <= mine and not rules_inside:
                problems.append(f"{module} imports {target}, which is not below it")
    return problems


def simulator_violations(graph: Graph) -> list[str]:
    """Imports from the simulated gateway into the daemon (anything of monitor outside it)."""
    return [
        f"{module} imports {target}"
        for module, imports in sorted(graph.items())
        if is_simulator(module)
        for target in sorted(imports & set(graph))
        if target.startswith("monitor") and not is_simulator(target) and target != "monitor"
    ]


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles among product modules (strongly connected components, Tarjan)."""
    product = set(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module] & product):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


# -- the product ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, frozenset[str]]:
    return import_graph(ROOT)


def test_the_product_has_no_import_cycle(graph):
    """No two modules of monitor/ and rules/ import each other, directly or around a loop."""
    assert cycles(graph) == []


def test_every_import_goes_down_the_layers(graph):
    """cli -> demo -> app -> daemon -> service (and the status page beside it) -> the edges ->
    clock -> rules, and every daemon module has its place in that order."""
    assert layer_violations(graph) == []


def test_rules_import_nothing_of_monitor(graph):
    """The pure core does not know the daemon."""
    assert {
        module: sorted(target for target in imports if target.startswith("monitor"))
        for module, imports in graph.items()
        if module.startswith("rules") and any(t.startswith("monitor") for t in imports)
    } == {}


@pytest.mark.parametrize("library", sorted(ONLY_IMPORTER))
def test_one_module_imports_each_outside_library(graph, library):
    """ib_async only in the gateway (conversion at the edge), apprise only in the notifier,
    the web stack (aiohttp, Jinja2) only in the status page's server."""
    importers = sorted(module for module, imports in graph.items() if library in imports)
    assert importers == [ONLY_IMPORTER[library]]


def test_the_simulator_imports_no_daemon_module(graph):
    """The simulated gateway (either spelling: monitor/sim/ or the flat modules) stands alone."""
    assert any(is_simulator(module) for module in graph), "the simulator is where we look"
    assert simulator_violations(graph) == []


def test_nothing_imports_the_cli(graph):
    """The command line sits on top: no product module imports it."""
    assert sorted(module for module, imports in graph.items() if "monitor.cli" in imports) == []


# -- the checks themselves catch what they are for -----------------------------------------------


def test_the_checks_see_lazy_and_type_checking_imports(tmp_path):
    """A miniature product whose service imports the daemon inside a function and whose
    metrics import the service under TYPE_CHECKING: both cycles and both upward imports are
    reported, as are a module in no layer, a simulator that imports the daemon and a rules
    module that imports monitor."""
    files = {
        "monitor/__init__.py": "",
        "monitor/daemon.py": "from monitor.service import MonitorService\n",
        "monitor/service.py": (
            "from monitor import metrics\n\n"
            "def later():\n    from monitor.daemon import Daemon\n"
        ),
        "monitor/metrics.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .service import MonitorService\n"
        ),
        "monitor/stray.py": "import rules.model\n",
        "monitor/sim/__init__.py": "",
        "monitor/sim/server.py": "from monitor.store import Store\nfrom . import state\n",
        "monitor/sim/state.py": "",
        "monitor/store.py": "",
        "rules/__init__.py": "",
        "rules/model.py": "from monitor.clock import utc_now\n",
        "monitor/clock.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)

    assert graph["monitor.service"] >= {"monitor.metrics", "monitor.daemon"}
    assert graph["monitor.sim.server"] == {"monitor.store", "monitor.sim.state"}
    assert cycles(graph) == [["monitor.daemon", "monitor.metrics", "monitor.service"]]
    problems = layer_violations(graph)
    assert "monitor.service imports monitor.daemon, which is not below it" in problems
    assert "monitor.metrics imports monitor.service, which is not below it" in problems
    assert any(problem.startswith("monitor.stray is in no layer") for problem in problems)
    assert simulator_violations(graph) == ["monitor.sim.server imports monitor.store"]
    assert "monitor.clock" in graph["rules.model"]
