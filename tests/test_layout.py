"""The package's shape: small modules, and no import cycle between ft's modules (counting the imports
inside functions too, which hide a cycle from Python until the function runs)."""

import ast
from pathlib import Path

import ft

SRC = Path(ft.__file__).parent
MAX_LINES = 300


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(module: str) -> set[str]:
    """ft modules that `module` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ft":
            for alias in node.names:  # `from ft.run import rundir` imports the module ft.run.rundir
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "ft"}
    return found - {module}


def test_no_module_is_over_300_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_no_import_cycle():
    graph = {module: _imports(module) for module in MODULES}
    cycles = []

    def visit(module, path):
        for dependency in sorted(graph.get(module, ())):
            if dependency in path:
                cycles.append(path[path.index(dependency) :] + [dependency])
            elif dependency not in done:
                visit(dependency, path + [dependency])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
