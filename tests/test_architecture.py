"""The tree shows the pipeline's stages, and imports run only from later stages to earlier ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sclcoder"

# ground floor < the run's contract < data < sft < train < infer < eval < what strings them together
LAYERS = [
    {"__init__", "errors", "progress", "files", "device", "defaults", "endpoints"},
    {"recipe", "backbones", "artifacts"},
    {"data"},
    {"sft"},
    {"train"},
    {"infer"},
    {"eval"},
    {"task_eval", "demo", "review", "cli"},
]


def layer(module: str) -> int:
    """`sclcoder.infer.predict` -> the index of `infer` in LAYERS."""
    top = module.split(".")[1] if module.count(".") else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} belongs to no layer: place it in LAYERS")


def imports(path: Path) -> set[str]:
    """Every sclcoder module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sclcoder"):
            found.add(node.module)
            # `from sclcoder.data import codes` imports the submodule sclcoder.data.codes
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").exists()
            )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sclcoder"))
    return found


def modules() -> dict[str, Path]:
    return {
        ".".join(("sclcoder", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }


def test_every_stage_is_a_package_with_its_modules() -> None:
    for stage, members in {
        "data": {"codes", "documents", "readers", "windows", "align", "mimic4", "corpus_folder", "corrections"},
        "sft": {"prompts", "answer", "examples", "teacher", "build"},
        "train": {"trainer", "plan", "callbacks", "adapter", "ranks"},
        "infer": {
            "environment",
            "distributed",
            "engine",
            "server",
            "watchdog",
            "settings",
            "merge",
            "local",
            "grounding",
            "predictions",
            "answers",
            "confidence",
            "support",
            "coder",
            "predict",
            "serve",
        },
        "eval": {"metrics", "scores", "calibration", "faithfulness", "gold", "evaluate", "report", "audit"},
        "demo": {"corpus", "charts", "filler", "patients", "conditions", "run"},
    }.items():
        present = {p.stem for p in (PACKAGE / stage).glob("*.py")} - {"__init__"}
        assert present == members, stage


def test_no_module_imports_a_later_stage() -> None:
    upward = []
    for name, path in modules().items():
        for target in imports(path):
            if target == "sclcoder":
                continue
            if layer(target) > layer(name):
                upward.append(f"{name} imports {target}")
    assert upward == []


def test_the_layer_check_sees_lazy_imports(tmp_path: Path) -> None:
    # the check itself must not miss an import hidden inside a function
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from sclcoder.eval.audit import build_report\n")
    assert "sclcoder.eval.audit" in imports(probe)
    assert layer("sclcoder.eval.audit") > layer("sclcoder.data.codes")


def _literal_default(node: ast.expr) -> bool:
    """A number other than 0 and 1 (the start of a count, the size of a step), or a path."""
    if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
        return False
    if isinstance(node.value, (int, float)):
        return node.value not in (0, 1)
    return isinstance(node.value, str) and ("/" in node.value or node.value.endswith((".json", ".jsonl", ".yaml")))


def test_each_default_is_defined_once() -> None:
    # settings live in the recipe schema (sclcoder/recipe/) and the constants module (sclcoder/defaults.py);
    # a number or a path written into a signature or a record elsewhere is a second definition of one of them
    found = []
    for name, path in modules().items():
        if name.startswith("sclcoder.recipe") or name == "sclcoder.defaults":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
                found += [f"{name}:{d.lineno}" for d in defaults if _literal_default(d)]
            elif isinstance(node, ast.ClassDef):
                found += [
                    f"{name}:{item.lineno}"
                    for item in node.body
                    if isinstance(item, ast.AnnAssign) and item.value is not None and _literal_default(item.value)
                ]
    assert found == []


def test_the_defaults_check_sees_a_literal(tmp_path: Path) -> None:
    tree = ast.parse("def f(port=8000, out='runs/eval', n=1):\n    pass\n")
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    assert [_literal_default(d) for d in fn.args.defaults] == [True, True, False]
