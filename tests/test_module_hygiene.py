"""The package's structure, read from its source: no import cycles, no private names imported across modules, a
pipeline that is the ordered list of stages and little else (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "convertctl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, ast.Module], top_level_only: bool):
    """(importer, imported module, imported name or None, line) for every convertctl import."""
    for name, tree in modules.items():
        is_package = (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").is_file()
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("convertctl"):
                        yield name, alias.name, None, node.lineno
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, is_package)
                if target.startswith("convertctl"):
                    for alias in node.names:
                        yield name, target, alias.name, node.lineno


def test_no_import_cycles_at_module_level():
    """Imports inside functions are the lazy ones (heavy libraries, late wiring); the module-level graph, through
    which importing any module pulls others, has no cycle."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for importer, target, name, _ in _imports(modules, top_level_only=True):
        full = f"{target}.{name}" if name and f"{target}.{name}" in modules else target
        if full in modules and full != importer:
            graph[importer].add(full)
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_is_imported_across_modules():
    modules = _modules()
    found = [f"{importer}:{line} imports {target}.{name}"
             for importer, target, name, line in _imports(modules, top_level_only=False)
             if name and name.startswith("_") and not name.startswith("__") and target != importer]
    assert not found, "\n".join(found)


def test_the_pipeline_is_the_ordered_stages_and_little_else():
    source = (PACKAGE / "pipeline.py").read_text()
    tree = ast.parse(source)
    assert len(source.splitlines()) < 250
    assert not [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name != "Reporter"]
    stages = {p.stem for p in (PACKAGE / "stages").glob("*.py")}
    assert {"export", "check", "optimize", "quantize", "build", "latency", "manifest"} <= stages
