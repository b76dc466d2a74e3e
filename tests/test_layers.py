"""The layers of `lib` (docs/architecture.md): each imports only from the layers below it, and no imports form a
cycle. Every import counts, the ones inside functions too, so a cycle cannot hide behind a late import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "lib"

# Bottom to top. A module may import its own layer (without a cycle) and any layer below it.
LAYERS = ("core", "profiles", "orchestrate", "study", "bench", "cli")
MAX_LINES = 500  # "a file that outgrows about 500 lines is split"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The kit modules `path` imports, anywhere in it (`from lib.x import y` counts lib.x.y when that is a module)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import lib.core.methods.taet` -> that module; `lib.x.Name` -> lib.x
                t = t.rpartition(".")[0]
            if t.startswith("lib") and t != name:
                found.add(t)
    return found


def layer_of(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) < 2:
        return None  # lib itself, lib.__main__: the package's entry points, above every layer
    head = parts[1]
    return LAYERS.index(head) if head in LAYERS else None


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def test_every_module_sits_in_a_layer():
    loose = [n for n in modules() if layer_of(n) is None and n not in ("lib", "lib.__main__")]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}; move each into one"


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for name, deps in graph().items():
        own = layer_of(name)
        if own is None:
            continue
        upward += [f"{name} -> {d}" for d in sorted(deps) if layer_of(d) is not None and layer_of(d) > own]
    assert not upward, "upward imports (a layer may import only those below it):\n" + "\n".join(upward)


def test_the_imports_form_no_cycle():
    g = graph()
    # a package's __init__ may gather its own modules (a registry); its modules must not import it back
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_walk_sees_late_and_relative_imports(tmp_path):
    """The walker itself: a function-level import and a relative one are both edges (else a cycle could hide)."""
    pkg = tmp_path / "lib" / "core"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("def f():\n    from lib.core.b import g\n")
    (pkg / "b.py").write_text("from .a import f\n")
    known = {"lib.core.a", "lib.core.b"}
    assert imports_of(pkg / "a.py", "lib.core.a", known) == {"lib.core.b"}
    assert imports_of(pkg / "b.py", "lib.core.b", known) == {"lib.core.a"}


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_outgrows_its_size(name):
    n = len(modules()[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines (at most {MAX_LINES}): split it by job"
