"""The exchanges are tasks without I/O: they see their IKE SA through `Ikev2Sa` and never
reach the wire, the transport, the session or a clock. Read with `ast`; imports made
only for type checking (`if TYPE_CHECKING:`) are names for annotations, not reach."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import larval.ikev2.exchanges

PACKAGE = Path(larval.ikev2.exchanges.__file__).parent
#: What a task must not reach: the wire and its keeper, the session, the clock, sockets.
OUT_OF_REACH = {
    "larval.ike.transport",
    "larval.ikev2.framing",
    "larval.ikev2.session",
    "larval.net",
    "asyncio",
    "socket",
    "time",
}


def _runtime_imports(path: Path) -> Iterator[str]:
    """The modules `path` imports when it runs, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(node)
        for stmt in ast.walk(tree)
        if isinstance(stmt, ast.If) and ast.unparse(stmt.test) == "TYPE_CHECKING"
        for node in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ["larval", "ikev2", "exchanges"][: 4 - node.level] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


MODULES = sorted(PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_an_exchange_module_reaches_no_wire_no_session_and_no_clock(path: Path) -> None:
    reached = [
        target
        for target in _runtime_imports(path)
        if any(target == banned or target.startswith(banned + ".") for banned in OUT_OF_REACH)
    ]
    assert reached == []


def test_the_walk_sees_relative_imports_and_skips_type_checking_ones() -> None:
    """What the check above stands on: `..session` under TYPE_CHECKING is not reach, and
    a relative import resolves to its module."""
    imports = set(_runtime_imports(PACKAGE / "create_child_sa.py"))
    assert "larval.ikev2.negotiate" in imports and "larval.ikev2.exchanges.sa" in imports
    assert "larval.ikev2.session" not in imports
    assert len(MODULES) >= 9
