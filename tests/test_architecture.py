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
    {"selection", "pipeline", "cli"},
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
        "data": {
            "codes",
            "documents",
            "readers",
            "windows",
            "align",
            "demo",
            "charts",
            "conditions",
            "patients",
            "mimic4",
        },
        "sft": {"prompts", "answer", "examples", "teacher", "build"},
        "train": {"trainer", "plan", "callbacks"},
        "infer": {"engine", "predict", "serve", "grounding", "watchdog", "merge", "local"},
        "eval": {"metrics", "faithfulness", "gold", "evaluate", "report"},
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
    probe.write_text("def f():\n    from sclcoder.eval.report import build_report\n")
    assert "sclcoder.eval.report" in imports(probe)
    assert layer("sclcoder.eval.report") > layer("sclcoder.data.codes")
