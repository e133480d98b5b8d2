"""The import graph keeps the layers of docs/architecture.md.

Every ``import`` and ``from ... import`` in ``src/keepstone`` (at any depth,
including imports inside functions) is read with :mod:`ast` and checked
against the layer it lives in. A lower layer that needs a helper from a
higher one means the helper is in the wrong place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import keepstone

SRC = Path(keepstone.__file__).parent

PURE = {"errors", "schemas", "version", "urls"}
"""Layers every other layer may import: errors, models, pure helpers."""

PUBLIC = PURE | {"__init__", "store", "ports", "services", "testing"}
"""What the outer layers (CLI, UI, LangGraph adapter, demo) may use."""

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "version": set(),
    "urls": set(),
    "schemas": {"errors", "schemas"},
    "ports": {"errors", "schemas", "ports"},
    "engine": {"errors", "schemas", "engine"},
    "core": PURE | {"ports", "engine", "core"},
    "services": PURE | {"ports", "services"},
    "backends": PURE | {"engine", "backends"},
    "store": PURE | {"ports", "engine", "core", "services", "store"},
    "__init__": PURE | {"store", "services", "sync", "__init__"},
    # The engine conformance suite builds write batches (the SPI) and compares
    # the engine under test with the reference, the memory engine.
    "testing": PUBLIC | {"engine", "backends"},
    "cli": PUBLIC | {"cli", "ui", "langgraph"},
    "demo": PUBLIC | {"demo"},
    "ui": PUBLIC | {"ui", "langgraph"},
    "langgraph": PUBLIC | {"langgraph"},
    "sync": PUBLIC | {"sync"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imported_layers(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, layer) of every keepstone import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "keepstone":
                modules = [f"keepstone.{a.name}" for a in node.names]
            else:
                modules = [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] != "keepstone":
                continue
            layer = parts[1] if len(parts) > 1 else "__init__"
            if not (SRC / layer).is_dir() and not (SRC / f"{layer}.py").is_file():
                layer = "__init__"  # a name defined in keepstone/__init__.py
            found.append((node.lineno, module, layer))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = sorted({_layer(p) for p in _modules()} - set(ALLOWED))
    assert unknown == [], f"modules outside the layer map: {unknown}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_respect_the_layers(path: Path) -> None:
    layer = _layer(path)
    allowed = ALLOWED.get(layer, set())
    bad = [
        f"{path.relative_to(SRC)}:{line} imports {module} (layer {target!r})"
        for line, module, target in _imported_layers(path)
        if target not in allowed and target != layer
    ]
    assert bad == [], "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The reader above finds function-level and ``from keepstone import`` imports."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from keepstone import __version__\n    import keepstone.store\n",
        encoding="utf-8",
    )
    layers = [layer for _, _, layer in _imported_layers(probe)]
    assert layers == ["__init__", "store"]
