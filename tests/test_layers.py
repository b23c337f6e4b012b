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
# Bottom to top; a module may import from its own layer and the layers below.
LAYERS = [
    ("distill.errors", "distill.settings", "distill.ranks"),
    ("distill.data", "distill.models", "distill.losses", "distill.metrics", "distill.fingerprints", "distill.muon",
     "distill.activations", "distill.student_init"),
    ("distill.forward", "distill.generation", "distill.generation_cache", "distill.evaluation", "distill.tracking",
     "distill.eval_cache", "distill.teacher_cache"),
    ("distill.loop",),
    ("distill.distillers",),
    ("distill.wiring", "distill.schemas", "distill.teacher", "distill.run_record", "distill.teacher_setup",
     "distill.experiment", "distill.report"),
]  # fmt: skip


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


def layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


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
    assert where("distillation_loss(") == ["distill.losses.divergences", "distill.losses.entry"]
    assert sum(text.count("distillation_loss(") for text in sources.values()) == 2  # its definition, one call
    assert where("def frozen_forward(") == ["distill.forward"]  # the teacher's frozen forward ...
    assert not [
        name for name, text in sources.items() if re.search(r"teacher\(\*\*|self\.teacher\(", text)
    ]  # ... called nowhere else
