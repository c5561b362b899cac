"""The IKE layers by their imports: `ike` below both versions, and neither version above
the other. Read with `ast`, so an import added anywhere (in a function too) is seen."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import larval

SRC = Path(larval.__file__).parent

# What `larval.ike` may build on (the layers below it); anything else of larval is above.
# `credentials` reads key and certificate files and imports nothing of larval but errors.
BELOW_IKE = {"errors", "wire", "pfkey", "crypto", "sadb", "spd", "esp", "ike", "credentials"}


def _modules(package: str) -> Iterator[tuple[str, ast.Module]]:
    """Each module of ``larval.<package>`` by dotted name, parsed."""
    for path in sorted((SRC / package).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("larval", *parts)), ast.parse(path.read_text(), str(path))


def _imports(name: str, tree: ast.Module) -> Iterator[str]:
    """Every module `tree` (the module ``name``) imports, relative imports resolved; for
    ``from m import x``, both ``m`` and ``m.x`` (x may be a module)."""
    package = name.split(".")
    if not (SRC / Path(*package[1:]) / "__init__.py").exists():
        package = package[:-1]  # a plain module: relative imports start from its package
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            # `from larval.ike import payload` imports the module larval.ike.payload too
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _reaching(package: str, allowed: set[str]) -> list[str]:
    """``module -> import`` for each import of a larval layer outside `allowed`."""
    out = []
    for name, tree in _modules(package):
        for target in _imports(name, tree):
            parts = target.split(".")
            if parts[0] == "larval" and len(parts) > 1 and parts[1] not in allowed:
                out.append(f"{name} -> {target}")
    return out


def test_ike_exists() -> None:
    assert list(_modules("ike")), "larval.ike has no modules"


def test_ike_imports_only_layers_below() -> None:
    assert _reaching("ike", BELOW_IKE) == []


@pytest.mark.parametrize(("version", "other"), [("ikev1", "ikev2"), ("ikev2", "ikev1")])
def test_versions_import_ike_never_each_other(version: str, other: str) -> None:
    everything = {p.stem for p in SRC.iterdir() if p.stem != "__pycache__"}
    assert _reaching(version, everything - {other}) == []


def test_relative_imports_resolve() -> None:
    """The walker itself: `from .constants import x` in ikev2.payloads is ikev2.constants."""
    name, tree = next(m for m in _modules("ikev2") if m[0] == "larval.ikev2.payloads")
    assert "larval.ikev2.constants" in set(_imports(name, tree))


# Each version's codec module and the shared module it builds on.
SHARED_BASES = {
    "codec": "larval.ike.codec",
    "payloads": "larval.ike.payload",
    "sa_payload": "larval.ike.sa_payload",
    "message": "larval.ike.message",
    "rules": "larval.ike.rules",
    "render": "larval.ike.render",
}


@pytest.mark.parametrize("version", ["ikev1", "ikev2"])
def test_versions_build_their_codecs_on_the_shared_base(version: str) -> None:
    modules = dict(_modules(version))
    missing = [
        f"larval.{version}.{module} does not import {base}"
        for module, base in SHARED_BASES.items()
        if base
        not in set(_imports(f"larval.{version}.{module}", modules[f"larval.{version}.{module}"]))
    ]
    assert missing == []
