"""Generate ``src/keepstone/sync/protocols.py``: the sync API's types.

The sync API has one implementation, a generic proxy (``keepstone.sync``),
which Python's type system cannot describe by itself: it turns every
``async def m(...) -> T`` into ``def m(...) -> T``, ``AsyncIterator[T]`` into
``Iterator[T]`` and an async context manager into a context manager. This
script writes that transformation down as ``typing.Protocol`` classes, one
per port or service, from the async signatures themselves, so that mypy
--strict users of ``keepstone.connect`` get exact types and the two cannot
drift: ``tests/test_sync.py`` fails when the file is not what this script
writes today.

    .venv/bin/python scripts/gen_sync_types.py
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import keepstone
from keepstone import ports, services
from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.audit import AuditLog
from keepstone.ports.blobs import BlobStore
from keepstone.ports.context import ContextStore
from keepstone.ports.doctor import Doctor
from keepstone.ports.events import EventLog
from keepstone.ports.logs import LogStore
from keepstone.ports.memory import MemoryStore
from keepstone.ports.runs import RunStore
from keepstone.ports.snapshots import SnapshotStore
from keepstone.services.gc import BlobCollector
from keepstone.services.paths import PathService
from keepstone.services.retention import RetentionService
from keepstone.services.review import ReviewGate
from keepstone.services.runs import PipelineRun, RunService

TARGET = Path(__file__).resolve().parent.parent / "src" / "keepstone" / "sync" / "protocols.py"

CLASSES: list[type] = [
    RunService,
    PipelineRun,
    RunStore,
    ArtifactStore,
    BlobStore,
    LogStore,
    MemoryStore,
    EventLog,
    AuditLog,
    ContextStore,
    SnapshotStore,
    Doctor,
    PathService,
    ReviewGate,
    RetentionService,
    BlobCollector,
]
"""Every async class the sync API hands out, as ``Sync<Name>``."""

SYNC_NAMES = {cls.__name__: f"Sync{cls.__name__}" for cls in CLASSES}
RENAMED = {
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncGenerator": "Generator",
    "AbstractAsyncContextManager": "AbstractContextManager",
}
"""Async generics and their sync counterparts (same arguments)."""

HOME = {
    "Iterator": "collections.abc",
    "Iterable": "collections.abc",
    "Generator": "collections.abc",
    "AbstractContextManager": "contextlib",
    "Protocol": "typing",
}
SEARCH = [keepstone.schemas, ports, services]


class Imports:
    """The names the generated module needs, by the module that defines them."""

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}
        self.modules: set[str] = set()

    def add(self, module: str, name: str) -> None:
        self.names.setdefault(module, set()).add(name)

    def render(self) -> str:
        lines = [f"import {m}" for m in sorted(self.modules)]
        for module in sorted(self.names):
            names = ", ".join(sorted(self.names[module]))
            lines.append(f"from {module} import {names}")
        return "\n".join(lines)


def defining_module(name: str, where: ModuleType) -> str:
    """The module whose top level defines ``name`` (as seen from ``where``)."""
    obj = where.__dict__[name]
    module = getattr(obj, "__module__", None)
    if isinstance(obj, type) or inspect.isfunction(obj):
        assert module is not None
        return str(module)
    if module in sys.modules and getattr(sys.modules[module], name, None) is obj:
        return str(module)  # typing.Any, collections.abc.Callable, ...
    pattern = re.compile(rf"^{re.escape(name)}\s*[:=]", re.M)
    for package in SEARCH:
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            candidate = importlib.import_module(info.name)
            if candidate.__dict__.get(name) is obj and pattern.search(inspect.getsource(candidate)):
                return info.name
    raise SystemExit(f"cannot tell where {name} (used in {where.__name__}) is defined")


class Annotation(ast.NodeTransformer):
    """Rewrites one annotation's text: async generics to sync ones, async
    classes to their ``Sync`` protocols; records every name it keeps."""

    def __init__(self, where: ModuleType, imports: Imports) -> None:
        self.where = where
        self.imports = imports

    def visit_Name(self, node: ast.Name) -> ast.AST:
        name = node.id
        if name in RENAMED:
            self.imports.add(HOME[RENAMED[name]], RENAMED[name])
            return ast.copy_location(ast.Name(RENAMED[name], ast.Load()), node)
        if name in SYNC_NAMES:
            return ast.copy_location(ast.Name(SYNC_NAMES[name], ast.Load()), node)
        if name == "None":
            return node
        obj = self.where.__dict__.get(name)
        if obj is None and hasattr(builtins, name):
            return node
        if obj is not None and _is_async_alias(obj):
            # An alias holding an async stream (ArtifactData): spell it out.
            text = _alias_text(name, self.where)
            tree = ast.parse(text, mode="eval").body
            return self.visit(tree)
        self.imports.add(defining_module(name, self.where), name)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        if not isinstance(node.op, ast.BitOr):
            return self.generic_visit(node)
        parts: list[ast.expr] = []
        for side in (node.left, node.right):
            done = self.visit(side)
            assert isinstance(done, ast.expr)
            parts += _union_members(done)
        unique: dict[str, ast.expr] = {}
        for part in parts:
            unique.setdefault(ast.unparse(part), part)  # Iterable | Iterable -> Iterable
        kept = list(unique.values())
        joined = kept[0]
        for part in kept[1:]:
            joined = ast.BinOp(joined, ast.BitOr(), part)
        return joined

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name):
            module = self.where.__dict__.get(node.value.id)
            if node.value.id == "builtins" or isinstance(module, ModuleType):
                self.imports.modules.add(node.value.id)
                return node
        return self.generic_visit(node)

    def rewrite(self, text: str) -> str:
        tree = ast.parse(text, mode="eval")
        return ast.unparse(self.visit(tree.body))


def _union_members(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_members(node.left) + _union_members(node.right)
    return [node]


def _is_async_alias(obj: Any) -> bool:
    return "AsyncIterable" in repr(obj) and not isinstance(obj, type)


def _alias_text(name: str, where: ModuleType) -> str:
    source = inspect.getsource(sys.modules[defining_module(name, where)])
    found = re.search(rf"^{re.escape(name)}\s*=\s*(.+)$", source, re.M)
    assert found, name
    return found.group(1)


def members(cls: type) -> list[tuple[str, Any]]:
    """Public methods, properties and annotated attributes, in source order."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ in ("builtins", "typing", "abc", "contextlib"):
            continue
        for name in getattr(klass, "__annotations__", {}):
            if not name.startswith("_"):
                found[name] = ("attribute", klass)
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if inspect.isfunction(value) or isinstance(value, property):
                found[name] = value
    return list(found.items())


def render_params(func: Any, rewrite: Annotation) -> str:
    out = []
    star_done = False
    for param in inspect.signature(func).parameters.values():
        if param.name == "self":
            out.append("self")
            continue
        text = param.name
        if param.kind is param.VAR_POSITIONAL:
            text = "*" + text
            star_done = True
        elif param.kind is param.VAR_KEYWORD:
            text = "**" + text
        elif param.kind is param.KEYWORD_ONLY and not star_done:
            out.append("*")
            star_done = True
        if param.annotation is not param.empty:
            text += f": {rewrite.rewrite(str(param.annotation))}"
        if param.default is not param.empty:
            text += f" = {_default(param.default)}"
        out.append(text)
    return ", ".join(out)


def _default(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    return "..."  # a protocol need not restate it: the async method's default applies


def summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].strip()


def render_class(cls: type, imports: Imports) -> str:
    where = sys.modules[cls.__module__]
    rewrite = Annotation(where, imports)
    origin = f"{cls.__module__}.{cls.__qualname__}"
    lines = [
        f"class {SYNC_NAMES[cls.__name__]}(Protocol):",
        f'    """Blocking :class:`{origin}` (see ``keepstone.sync``)."""',
        "",
    ]
    for name, value in members(cls):
        if isinstance(value, tuple):
            klass = value[1]
            annotation = klass.__annotations__[name]
            rw = Annotation(sys.modules[klass.__module__], imports)
            lines.append(f"    {name}: {rw.rewrite(str(annotation))}")
            continue
        if isinstance(value, property):
            assert value.fget is not None
            returns = rewrite.rewrite(str(value.fget.__annotations__["return"]))
            lines += ["    @property", f"    def {name}(self) -> {returns}:"]
            doc = summary(value.fget)
        else:
            returns = rewrite.rewrite(str(value.__annotations__.get("return", "None")))
            lines.append(f"    def {name}({render_params(value, rewrite)}) -> {returns}:")
            doc = summary(value)
        if doc:
            body = textwrap.indent(f'"""{doc}"""', " " * 8)
            lines.append(body.replace('\\"', '"'))
        lines += ["        ...", ""]
    return "\n".join(lines).rstrip() + "\n"


HEADER = '''"""Types of the sync API: one ``typing.Protocol`` per port and service.

Generated by ``scripts/gen_sync_types.py`` from the async signatures; do not
edit. Each method is its async counterpart made blocking: coroutines return
their result, async iterators are iterators, async context managers are
context managers, and async objects are their ``Sync`` protocols. The
objects ``keepstone.connect`` hands out are generic proxies (see
``keepstone.sync``); these protocols describe them for type checkers.
"""

from __future__ import annotations

'''


def generate() -> str:
    imports = Imports()
    imports.add("typing", "Protocol")
    bodies = [render_class(cls, imports) for cls in CLASSES]
    for sync_name in SYNC_NAMES.values():
        imports.names.get("keepstone.sync.protocols", set()).discard(sync_name)
    text = HEADER + imports.render() + "\n\n\n" + "\n\n".join(bodies)
    return _formatted(text)


def _formatted(text: str) -> str:
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run(
        [str(ruff), "format", "--stdin-filename", str(TARGET), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    fixed = subprocess.run(
        [str(ruff), "check", "--fix", "--quiet", "--stdin-filename", str(TARGET), "-"],
        input=done.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    return fixed.stdout or done.stdout


if __name__ == "__main__":
    TARGET.write_text(generate())
    print(f"wrote {TARGET.relative_to(TARGET.parents[3])}")
