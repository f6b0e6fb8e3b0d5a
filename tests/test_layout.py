"""The package's shape: small modules, layers that only look down, and no import cycle between ft's modules
(counting the imports inside functions too, which hide a cycle from Python until the function runs)."""

import ast
from pathlib import Path

import ft

SRC = Path(ft.__file__).parent
MAX_LINES = 400
# Each layer may import the layers before it, never one after it (docs: Architecture). The schema and the
# task registry are the bottom; composing a config (ft.config.compose) runs the config-alone rules, so it sits
# above ft.rules. A task module's top level imports only the bottom: every layer reads its declaration.
LAYERS = [
    ["ft", "ft.errors", "ft.options"],
    ["ft.config.names", "ft.config.data_schema", "ft.config.schema", "ft.config.registry", "ft.config.saved"],
    ["ft.data"],
    ["ft.models"],
    ["ft.run"],
    ["ft.rules"],
    ["ft.config", "ft.config.recipe_file", "ft.config.reference"],
    ["ft.finish"],
    ["ft.training"],
    ["ft.tasks"],
    ["ft.commands"],
    ["ft.studio"],
    ["ft.cli", "ft.__main__"],
]


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


def _layer(module: str) -> int:
    """The index of the layer `module` belongs to (its longest matching package)."""
    owners = [
        (len(name), index)
        for index, names in enumerate(LAYERS)
        for name in names
        if module == name or module.startswith(name + ".")
    ]
    return max(owners)[1]


def test_every_module_has_a_layer():
    assert [m for m in MODULES if not any(m == n or m.startswith(n + ".") for names in LAYERS for n in names)] == []


def test_imports_follow_the_layer_order():
    upward = sorted(
        f"{module} -> {dependency}"
        for module in MODULES
        for dependency in _imports(module)
        if _layer(dependency) > _layer(module)
    )
    assert upward == []


def _top_level_imports(module: str) -> list[str]:
    """ft modules that `module` imports at its top level (what importing it runs)."""
    found = []
    for node in ast.parse(MODULES[module].read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ft"):
            found += [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            ]
    return found


def _heavy_imports(module: str, seen: frozenset = frozenset()) -> list[str]:
    """`module`'s top-level imports above ft.config's schema and registry. Another module of ft.tasks (a task's
    declaration, or a part of a task package such as its schema) counts by what importing it runs: its package's
    and its own top-level imports, held to the same rule."""
    heavy = []
    for name in _top_level_imports(module):
        if _layer(name) <= 1 or name in seen:
            continue
        if not name.startswith("ft.tasks."):
            heavy.append(f"{module} -> {name}")
            continue
        parts = name.split(".")
        for imported in (".".join(parts[:end]) for end in range(3, len(parts) + 1)):  # its packages, then itself
            if imported not in seen and imported != module:
                seen = seen | {imported}
                heavy += _heavy_imports(imported, seen | {module})
    return heavy


def test_task_modules_declare_themselves_with_light_imports():
    """What the registry imports to read a task's declaration stays at ft.config and below (a task may build its
    section on another task's, e.g. vlm_dpo on dpo's and vlm's: those imports are light in turn)."""
    top_level = {"ft.tasks", *(m for m in MODULES if m.count(".") == 2 and m.startswith("ft.tasks."))}
    assert [h for module in sorted(top_level) for h in _heavy_imports(module)] == []


def test_no_module_is_over_400_lines():
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
