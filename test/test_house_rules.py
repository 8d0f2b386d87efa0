# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""House rules checked on the package source with ast.

No import cycles, core/ free of ROS, torch and tqdm, and each shared rule constant defined in one place
(core/sensor.py, core/metrics.py).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "celegans_autofocus"
NAME = PACKAGE.name
#: top-level modules core/ must not import: ROS, torch and friends, progress bars (core reports by callbacks)
CORE_FORBIDDEN = {"rclpy", "rosbags", "sensor_msgs", "geometry_msgs", "std_msgs", "rcl_interfaces",
                  "torch", "timm", "tqdm"}
#: the rule constants and their one home
HOMES = {"core/sensor.py", "core/metrics.py"}
RULE_NUMBERS = {2592, 1944, 1.55}
RULE_NAMES = {"FULL_FRAME_WH", "FULL_FRAME_WH_PX", "FULL_FRAME_HW", "FRAME_WH", "FRAME_HW", "UM_PER_PX",
              "REFERENCE_UM_PER_PX", "STEP_UM", "IN_FOCUS_STEPS", "DOF_STEPS", "SIGN_THRESHOLD_STEPS",
              "SIGN_BEYOND_STEPS", "step_um", "um_per_px", "in_focus_steps", "dof_steps", "sign_threshold_steps"}
#: files other branches were editing when this test was written; each still defines a rule constant that
#: the lead switches to core.sensor / core.metrics at merge. Remove an entry once its file is clean.
PENDING: set[str] = set()


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Return every module ``module`` imports (anywhere in the file, lazy imports included), as dotted names.

    For ``from X import y`` the submodule X.y when it is one.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES)
    return found


GRAPH = {m: {t for t in _imports(m, p) if t in MODULES and t != m and not MODULES[t].name == "__init__.py"}
         for m, p in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_real():
    assert f"{NAME}.core.dataset.labels" in GRAPH[f"{NAME}.core.dataset.labelling"]
    assert f"{NAME}.core.sensor" in GRAPH[f"{NAME}.core.detection"]
    assert len(MODULES) > 50


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert _cycle(GRAPH) is None


def test_core_imports_neither_ros_nor_torch_nor_the_rest_of_the_package():
    bad = []
    for module, path in MODULES.items():
        if not module.startswith(f"{NAME}.core"):
            continue
        for target in _imports(module, path):
            top = target.split(".")[0]
            if top in CORE_FORBIDDEN or (top == NAME and not target.startswith(f"{NAME}.core")):
                bad.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert bad == []


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _is_number(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def _target_names(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [t.id if isinstance(t, ast.Name) else t.attr
                for t in targets if isinstance(t, (ast.Name, ast.Attribute))]
    return []


def rule_violations(source: str, filename: str = "<string>") -> list[str]:
    """Return where ``source`` writes a rule constant itself.

    The numbers 2592, 1944 or 1.55 (in code or in a string other than a docstring), a rule name given a
    number, or a ("step_um", 5.0)-style parameter.
    """
    tree = ast.parse(source, filename)
    docs = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if _is_number(node) and node.value in RULE_NUMBERS:
            out.append(f"{where}: literal {node.value}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
              and any(str(n) in node.value for n in (2592, 1944))):
            out.append(f"{where}: {node.value!r}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and (
                _is_number(node.value) or isinstance(node.value, (ast.Tuple, ast.BinOp))):
            out += [f"{where}: {name} = <number>" for name in _target_names(node) if name in RULE_NAMES]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            out += [f"{where}: default {a.arg}={d.value}" for a, d in pairs if a.arg in RULE_NAMES and _is_number(d)]
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            first, second = node.args[:2]
            if isinstance(first, ast.Constant) and first.value in RULE_NAMES and _is_number(second):
                out.append(f"{where}: {first.value!r}, {second.value}")
    return out


def test_rule_checker_catches_each_form():
    source = '''"""A docstring may say 2592 x 1944."""
FRAME_WH = (2592, 1944)
STEP_UM = 5.0
HELP = "sensor width (default 2592)"
def f(in_focus_steps: float = 8.0, *, um_per_px=2.0): pass
class C:
    step_um: float = 5.0
P = Param("step_um", 5.0, "micrometres per step")
x = 1.55
'''
    found = "\n".join(rule_violations(source))
    for expected in ("2:", "3: STEP_UM", "4:", "in_focus_steps=8.0", "um_per_px=2.0", "7: step_um", "8: 'step_um'",
                     "9: literal 1.55"):
        assert expected in found, (expected, found)
    assert ":1:" not in found
    assert rule_violations("from .sensor import STEP_UM\nSTEP = STEP_UM\ndef f(step_um=STEP_UM): pass\n") == []


def test_each_rule_constant_is_defined_once():
    bad, clean_pending = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in HOMES:
            continue
        found = rule_violations(path.read_text(), rel)
        if rel in PENDING:
            clean_pending += [] if found else [rel]
        else:
            bad += found
    assert bad == [], "use core.sensor / core.metrics instead"
    assert clean_pending == [], "no rule constant left here: remove it from PENDING"


@pytest.mark.parametrize("home", sorted(HOMES))
def test_homes_define_the_rules(home):
    assert rule_violations((PACKAGE / home).read_text(), home)
