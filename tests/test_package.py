"""The library as a package: every module imports from a fresh interpreter anywhere (the installed
`juicebox`, no path edits), and no two modules import each other, directly or round a circle."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from conftest import ROOT

PACKAGE = ROOT / "scripts" / "juicebox"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_files()


def imported(name: str, module_level: bool = True) -> set[str]:
    """The juicebox modules that importing ``name`` imports: relative imports resolved, a package
    counted with each of its submodules (importing one runs the package first), the module's own
    packages left out. ``module_level``: only imports that run when the module is imported (not
    those inside functions; ``if TYPE_CHECKING:`` blocks never run)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and module_level:
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                targets.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - child.level + 1] + ([child.module] if child.module else []))
                targets.extend(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    out = set()
    for target in targets:
        parts = target.split(".")
        out.update(t for t in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                   if t in MODULES and t not in own and t != name)
    return out


def import_cycles(module_level: bool) -> list[list[str]]:
    """Every cycle a depth-first walk of the import graph meets (each as a closed path)."""
    graph = {name: imported(name, module_level) for name in MODULES}
    state: dict[str, str] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                walk(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name)
    return cycles


def third_party(name: str) -> set[str]:
    """Top-level names of the packages outside juicebox and the standard library that the module
    imports when it is imported."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name.split(".")[0] for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and not child.level:
                found.add(child.module.split(".")[0])
            visit(child)

    visit(ast.parse(MODULES[name].read_text(encoding="utf-8")))
    return {top for top in found if top not in sys.stdlib_module_names and top not in ("__future__", "juicebox")}


def import_closure(names: set[str]) -> set[str]:
    """The juicebox modules importing ``names`` runs (themselves, their packages, what they import)."""
    seen: set[str] = set()
    todo = [name for name in names if name in MODULES]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            parents = (".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))
            todo.extend([*imported(name), *parents])
    return seen


def test_the_package_has_no_import_cycle():
    cycles = import_cycles(module_level=True)
    assert not cycles, "module-level import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
    # Imports inside functions too: a circle two modules dodge by importing late is still a circle.
    cycles = import_cycles(module_level=False)
    assert not cycles, "import cycles (counting imports inside functions):\n" + "\n".join(" -> ".join(c)
                                                                                           for c in cycles)


def test_the_graph_sees_relative_imports_and_packages():
    assert {"juicebox.engines.base", "juicebox.images", "juicebox.models", "juicebox.records"} <= \
        imported("juicebox.engines.hf")
    assert "juicebox.engines" not in imported("juicebox.engines.hf")  # its own package: already importing
    assert {"juicebox.engines", "juicebox.engines.hf"} <= imported("juicebox.rollouts")
    assert {"juicebox.engines.hf", "juicebox.engines.openai", "juicebox.engines.base"} <= imported("juicebox.engines")


def test_every_module_imports_in_a_fresh_interpreter_anywhere(tmp_path):
    """From an empty folder, with no PYTHONPATH: the installed package, this checkout's files."""
    code = ("import importlib, json, sys\n"
            "names = json.loads(sys.argv[1])\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps({name: sys.modules[name].__file__ for name in names}))\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(sorted(MODULES))], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = json.loads(proc.stdout.splitlines()[-1])
    assert {name: Path(file) for name, file in files.items()} == MODULES


def test_import_juicebox_from_elsewhere(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import juicebox; print(juicebox.__file__)"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == PACKAGE / "__init__.py"


def test_the_distribution_is_installed_from_this_checkout():
    from importlib import metadata

    dist = metadata.distribution("juicebox")
    assert dist.version == "0.1.0"
    # an editable install records where it points (PEP 610)
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    assert direct.get("dir_info", {}).get("editable"), "juicebox is not installed editable: pip install -e ."
    assert Path(url2pathname(urlparse(direct["url"]).path)).resolve() == ROOT
