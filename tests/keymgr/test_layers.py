"""The key manager knows IKE SAs only as `larval.ike.sa.IkeSa`, and one `Node` joins a
stack to a key manager. Read with `ast`, as tests/ike/test_layers.py reads the layers."""

from __future__ import annotations

import ast

from tests.ike.test_layers import SRC, _imports, _modules

SESSIONS = {"larval.ikev1.session", "larval.ikev2.session"}


def test_only_the_version_table_imports_the_session_classes() -> None:
    importers = {name for name, tree in _modules("keymgr") if SESSIONS & set(_imports(name, tree))}
    assert importers == {"larval.keymgr.versions"}


def test_the_key_manager_neither_writes_ike_nor_reads_states_by_name() -> None:
    name, tree = next(m for m in _modules("keymgr") if m[0] == "larval.keymgr.manager")
    imported = set(_imports(name, tree))
    # No message classes, payloads or encoders of either version: it builds no wire message.
    allowed = (
        "larval.ikev2.negotiate",  # `suite_get`, to read a negotiated suite
        "larval.ikev2.stateless",  # `Cookies`: the COOKIE secrets it keeps
    )
    versions = {i for i in imported if i.startswith(("larval.ikev1.", "larval.ikev2."))}
    assert {i for i in versions if i not in allowed and not i.startswith(allowed)} == set()
    assert "larval.ikev2.stateless" in versions  # the walker sees the imports at all
    states = {"idle", "established", "closed", "rekeyed", "deleting"}
    compared = [
        node.value
        for compare in ast.walk(tree)
        if isinstance(compare, ast.Compare)
        for node in ast.walk(compare)
        if isinstance(node, ast.Constant) and node.value in states
    ]
    assert compared == []
    calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == "isinstance"]  # fmt: skip
    session_checks = [
        n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id.endswith("Session")
    ]
    assert calls and session_checks == []  # isinstance on events still, never on sessions


def test_one_node_joins_a_stack_and_a_key_manager() -> None:
    """Outside `larval.node`, nothing in larval constructs a KeyManager."""
    builders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "KeyManager":
                builders.append(str(path.relative_to(SRC)))
    assert builders == ["node.py"]
