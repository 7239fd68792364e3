"""The package reads one way: every import of ``src/litvision`` (at any depth, lazy ones inside functions too)
goes down the layers, so a feature can be deleted without chasing imports and the base stands alone.

    tasks/                                 compose the parts below
    report/  sweeps/                       features, each deletable with its configs
    callbacks/                             dashboards, fine-tuning, interruption, ...
    classifier  model_options              the LightningModule and its checks
    metrics  schedules                     what the module wires
    data/  models/                         data modules and nets
    support/                               the base: errors, atomic files, ranks, stops, building configs
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src"
LAYER = {
    "support": 0,
    "data": 1,
    "models": 1,
    "metrics": 2,
    "schedules": 2,
    "model_options": 3,
    "classifier": 4,
    "callbacks": 5,
    "report": 6,
    "sweeps": 6,
    "tasks": 7,
}
FEATURES = ("report", "sweeps")  # reached from the core only through config (_target_, callbacks)
CORE_TRAIN_PATH = ("support", "data", "models", "metrics", "schedules", "model_options", "classifier", "callbacks")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in (SRC / "litvision").rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The litvision modules ``path`` imports (``from a.b import c`` counts a.b.c when c is a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in known else node.module for name in names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("litvision"):
                found.add(name)
    return found


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, set(known)) - {name} for name, path in known.items()}


def test_every_package_is_placed_in_a_layer(graph):
    assert {package(name) for name in graph} - {"litvision"} <= set(LAYER)  # a fork may have deleted features


def test_imports_only_go_down_the_layers(graph):
    upward = [
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if package(name) != package(target) and package(target) != "litvision"
        and LAYER.get(package(name), 99) <= LAYER[package(target)]
    ]  # fmt: skip
    assert upward == []


def test_no_file_imports_itself_through_others(graph):
    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(graph.get(name, ()))
        return seen

    assert [name for name in graph if name in reaches(name)] == []


def test_the_core_train_path_reaches_no_feature_package(graph):
    core = [name for name in graph if package(name) in CORE_TRAIN_PATH or name == "litvision.tasks.train"]
    reached = {target for name in core for target in graph[name]}
    assert sorted(target for target in reached if package(target) in FEATURES) == []
