"""The import graph of runner/, targets/ and environments/ (every import of our own
modules, those inside functions included) has no cycle once the known back edges below
are left out (issue 13). A new cycle fails here, and so does a known edge once it is gone
(then take it off the list).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("runner", "targets", "environments")

#: Cycles left (none): each a sorted list of modules.
KNOWN_CYCLES: list[list[str]] = []

#: Imports (importer, imported) that point up the layers on purpose, each with its reason
#: where it is made. The v1 object model runs models < run < script_run < submit <
#: experiment < workspace < context; ``Run.get_context()`` has to reach the top (the
#: context builds a Workspace, whose ``experiments`` build Experiments, whose
#: ``start_logging`` builds Runs), so run imports context inside that one method.
KNOWN_BACK_EDGES = [("runner.run", "runner.context")]


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that ``name`` imports anywhere but under ``if TYPE_CHECKING:``."""
    out: set[str] = set()

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{path}: relative import"
                base = child.module or ""
                names = [base, *(f"{base}.{alias.name}" for alias in child.names)]
            for dotted in names:
                target = owner(dotted)
                if target is not None and target != name:
                    out.add(target)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def test_the_import_graph_has_no_new_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    for importer, imported in KNOWN_BACK_EDGES:
        assert imported in graph[importer], f"{importer} no longer imports {imported}"
        graph[importer].discard(imported)
    assert _cycles(graph) == KNOWN_CYCLES


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


#: The only modules that import our own modules inside functions, and why (issue 13: not
#: to dodge cycles, only to keep something heavy or host-only off a path that must stay
#: fast or standard-library only). A new one fails below until it is listed with a reason.
LAZY_IMPORTERS = {
    "runner.cli": "a command's modules load when it runs: `runner --help` stays fast",
    "runner.run": "in-run client: the daemon client, lifecycle, environments and snapshots "
    "load on first use, not in every training script's Run.get_context()",
    "runner.run_status": "in-run client (as runner.run)",
    "runner.run_files": "in-run client (as runner.run)",
    "runner.workspace_folder": "in-run client (as runner.run); environments/ is host-only",
    "runner.experiment": "in-run client: submit's code loads on the first submit",
    "runner.submit": "in-run client: the daemon client loads when a run is handed over",
    "runner.lifecycle": "in-run client: the daemon client loads when a daemon is asked",
    "runner.control": "in-run client: the daemon client loads when a run is canceled",
    "runner.remote_agent": "a host's agent session starts without the workspace modules "
    "(follow and cancel sessions never need them)",
    "runner.tensorboard": "psutil loads with the TensorBoard process, not on import",
    "targets.local": "psutil (targets.keepers) loads with the first run, not at submit",
    "targets.docker": "psutil and the image builder load with a container, not at submit",
    "targets.ssh": "the environment builders load when a host prepares one",
    "environments.selection": "each builder loads its dependencies (docker, py-rattler, uv) "
    "only when it is the one chosen",
    "environments.docker_image": "the conda builder (py-rattler) only for conda layers",
}


def _lazy_importers() -> dict[str, list[str]]:
    """Module -> the lines where it imports one of our modules inside a function."""
    found: dict[str, list[str]] = {}
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom):
                    names = [inner.module or ""]
                elif isinstance(inner, ast.Import):
                    names = [alias.name for alias in inner.names]
                else:
                    continue
                if any(n.split(".")[0] in PACKAGES for n in names):
                    found.setdefault(name, []).append(f"{path.name}:{inner.lineno}")
    return found


def test_imports_inside_functions_only_where_a_reason_is_written() -> None:
    def listed(module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in LAZY_IMPORTERS)

    unlisted = {m: lines for m, lines in _lazy_importers().items() if not listed(m)}
    assert unlisted == {}, "import at the top, or list the module with its reason"
    unused = [
        m
        for m in LAZY_IMPORTERS
        if not any(listed_m == m or listed_m.startswith(m + ".") for listed_m in _lazy_importers())
    ]
    assert unused == [], "these no longer import lazily: take them off LAZY_IMPORTERS"
