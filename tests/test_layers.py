"""The package depends one way: every import goes to the same layer or one below, and no module
imports itself back through a chain. Read from the source with ``ast``, so a lazy import inside a
function counts too."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "distill"
# Bottom to top, one line per layer, naming packages; a package may import from its own layer and below.
LAYERS = [
    ("core",),  # errors and checks, fingerprints, ranks, the disk cache, building from config
    ("data", "losses", "models", "optim", "loggers"),
    ("inference",),  # forward, generation, evaluation, text metrics
    ("teacher",),  # trained, fine-tuned or loaded; its identity and the caches keyed on it
    ("loop",),
    ("distillers",),
    ("config", "run", "report"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The distill modules ``path`` imports (``from distill.x import y`` is ``distill.x.y`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("distill")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distill"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def package_of(module: str) -> str:
    """``distill.teacher.source`` -> ``teacher``."""
    return module.split(".")[1]


def layer(module: str) -> int:
    for i, packages in enumerate(LAYERS):
        if package_of(module) in packages:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, known) - {name} for name, path in mods.items() if name != "distill"}


def test_every_import_goes_down_or_sideways():
    wrong = [
        f"{src} (layer {layer(src)}) imports {dst} (layer {layer(dst)})"
        for src, targets in graph().items()
        for dst in targets
        if dst != "distill" and layer(dst) > layer(src)
    ]
    assert not wrong, "\n".join(wrong)


def test_distill_holds_packages_only():
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not flat, f"flat modules in distill/ (move them into the package of their layer): {flat}"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {name for layer in LAYERS for name in layer}


def test_every_package_states_its_one_job():
    for package in PACKAGE.iterdir():
        if (package / "__init__.py").is_file():
            doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
            assert doc, f"distill/{package.name}/__init__.py has no docstring"


def test_no_package_import_cycles():
    edges = {(package_of(src), package_of(dst)) for src, targets in graph().items() for dst in targets
             if dst != "distill" and package_of(src) != package_of(dst)}  # fmt: skip
    back = sorted((a, b) for a, b in edges if (b, a) in edges)
    assert not back, f"packages importing each other: {back}"


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if state.get(nxt) is None and nxt in g:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])


def test_importing_the_loop_loads_no_distiller():
    code = "import distill.loop, sys; print([m for m in sys.modules if m.startswith('distill.distillers')])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_shift_mask_teacher_forward_and_loss_call_are_written_once():
    sources = {name: path.read_text() for name, path in modules().items()}

    def where(snippet: str) -> list[str]:
        return [name for name, text in sources.items() if snippet in text]

    assert where("[:, :-1]") == ["distill.data.sequences"]
    assert where("!= IGNORE_INDEX") == ["distill.data.sequences"] and where("[:, 1:]") == ["distill.data.sequences"]
    assert where("distillation_loss(") == ["distill.losses.divergences", "distill.losses.objective_loss"]
    assert sum(text.count("distillation_loss(") for text in sources.values()) == 2  # its definition, one call
    assert where("def frozen_forward(") == ["distill.inference.forward"]  # the teacher's frozen forward ...
    assert not [
        name for name, text in sources.items() if re.search(r"teacher\(\*\*|self\.teacher\(", text)
    ]  # ... called nowhere else


def test_each_shared_helper_is_written_once():
    sources = {name: path.read_text() for name, path in modules().items()}

    def where(pattern: str) -> list[str]:
        return sorted(name for name, text in sources.items() if re.search(pattern, text))

    assert where(r"FileLock\(") == ["distill.core.disk_cache"]  # the one locked, atomic cache
    assert where(r"os\.replace\(|\.rename\(") == ["distill.core.disk_cache"]
    assert where(r"def unwrap\(") == ["distill.models.facts"]
    assert where(r"get_output_embeddings\(") == ["distill.models.facts"]
    assert where(r"RUNTIME_ARGUMENTS\b[^=\n]*= ") == ["distill.core.instantiate"]
    assert where(r"splitlines\(\)\[0\]") == ["distill.core.errors", "distill.report.cli"]  # the latter: a docstring
    assert where(r"CROSS_ENTROPY = ") == ["distill.losses.objective"]
