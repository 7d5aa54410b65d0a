"""The library's arrows point one way (read from the source with ast, nothing imported): formats and
metrics know nothing of tasks or the model store; a task module imports no other task (only the
shared bases) and no converter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "platform" / "facelab"
TASK_BASES = {"facelab.tasks.base", "facelab.tasks.torch_task", "facelab.tasks.prepared_torch",
              "facelab.tasks.yolo_base"}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = LIBRARY) -> set[str]:
    """The modules a file imports, lazy imports inside functions included, as absolute names;
    `from package import module` names the module."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                candidate = root.parent / Path(*f"{base}.{alias.name}".split("."))
                if candidate.with_suffix(".py").is_file() or candidate.is_dir():
                    found.add(f"{base}.{alias.name}")
                else:  # a name defined in `base`
                    found.add(base)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def offences(paths, forbidden, root: Path = LIBRARY) -> list[str]:
    return sorted(f"{module_name(path, root)} imports {name}" for path in paths for name in imports(path, root)
                  if forbidden(name))


def task_forbidden(name: str) -> bool:
    """For a task module: any converter, and any task module but the shared bases (the registry too)."""
    return within(name, "facelab.converters") or (within(name, "facelab.tasks") and name not in TASK_BASES)


def test_the_import_reader_sees_lazy_relative_and_submodule_imports(tmp_path):
    root = tmp_path / "facelab"
    for module in ("store.py", "tasks/__init__.py", "tasks/base.py", "tasks/mask.py", "converters/__init__.py"):
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text("")
    probe = root / "tasks" / "probe.py"
    probe.write_text("from facelab import store\nimport numpy as np\n\n\ndef f():\n"
                     "    from facelab.tasks.mask import MaskAnswers\n    from . import base\n"
                     "    from ..converters import convert\n")
    found = imports(probe, root)
    assert {"facelab.store", "facelab.tasks.mask", "facelab.tasks.base", "facelab.converters", "numpy"} <= found
    assert "facelab.tasks.mask.MaskAnswers" not in found
    assert offences([probe], task_forbidden, root) == ["facelab.tasks.probe imports facelab.converters",
                                                       "facelab.tasks.probe imports facelab.tasks.mask"]


@pytest.mark.parametrize("layer", ["formats", "metrics"])
def test_formats_and_metrics_know_no_tasks_and_no_store(layer):
    paths = sorted((LIBRARY / layer).rglob("*.py")) if (LIBRARY / layer).is_dir() else [LIBRARY / f"{layer}.py"]
    assert paths and all(p.is_file() for p in paths)
    assert offences(paths, lambda name: within(name, "facelab.tasks") or within(name, "facelab.store")) == []


def test_tasks_import_no_other_task_and_no_converter():
    paths = [p for p in sorted((LIBRARY / "tasks").glob("*.py"))
             if p.name != "__init__.py" and module_name(p, LIBRARY) not in TASK_BASES]
    assert len(paths) >= 10  # every task module
    assert offences(paths, task_forbidden) == []


def test_the_shared_bases_import_no_task_and_no_converter():
    """The bases may look a task up by name in the registry (a Ray worker's trial does), nothing more."""
    paths = [LIBRARY / "tasks" / f"{name.rpartition('.')[2]}.py" for name in sorted(TASK_BASES)]
    assert offences(paths, lambda name: name != "facelab.tasks" and task_forbidden(name)) == []
