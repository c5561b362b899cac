"""The daemon's configuration file: DESIGN.md's format read, and every mistake named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from larval.daemon.config import ConfigError, parse_config
from larval.errors import LarvalError
from larval.spd import Action, Direction, Mode

GOOD: dict[str, Any] = {
    "daemon": {"addresses": ["192.0.2.2"], "tun": "larval0", "control_socket": "/tmp/c"},
    "connections": {
        "s2s": {
            "version": 2,
            "local_addrs": ["192.0.2.2"],
            "remote_addrs": ["192.0.2.1"],
            "proposals": ["aes128-sha256-x25519", "aes256gcm16-prfsha384-ecp384"],
            "encap": True,
            "local": {"auth": "psk", "id": "192.0.2.2"},
            "remote": {"auth": "psk", "id": "192.0.2.1"},
            "children": {
                "net": {
                    "local_ts": ["203.0.113.0/24"],
                    "remote_ts": ["198.51.100.0/24"],
                    "esp_proposals": ["aes128gcm16", "aes128-sha256"],
                    "mode": "tunnel",
                    "start_action": "trap",
                }
            },
        }
    },
    "secrets": {"ike-s2s": {"ids": ["192.0.2.1", "192.0.2.2"], "secret": "psk-0123456789"}},
}


def test_the_design_example_reads() -> None:
    cfg = parse_config(GOOD, "larval.toml")
    (conn,) = cfg.connections
    assert conn.ike.encap and len(conn.ike.proposals) == 2 and conn.ike.psk == b"psk-0123456789"
    assert conn.start_action == {"net": "trap"}
    out = [p for p in cfg.policies if p.direction is Direction.OUT]
    assert len(out) == 1 and out[0].action is Action.PROTECT and out[0].mode is Mode.TUNNEL
    assert str(out[0].tunnel.remote) == "192.0.2.1"  # type: ignore[union-attr]


def test_fragmentation_and_the_fragment_size() -> None:
    (conn,) = parse_config(GOOD, "larval.toml").connections
    assert conn.ike.fragmentation and conn.ike.fragment_size == 1280  # strongSwan's defaults
    data = _with(["connections", "s2s", "fragmentation"], "no")
    data["daemon"]["fragment_size"] = 576
    (conn,) = parse_config(data, "larval.toml").connections
    assert not conn.ike.fragmentation and conn.ike.fragment_size == 576


def _with(path: list[str], value: object) -> dict[str, Any]:
    import copy

    data = copy.deepcopy(GOOD)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["connections", "s2s", "proposals"], ["aes128-sha256-x99999"], "proposals[0]"),
        (["connections", "s2s", "children", "net", "mode"], "tunel", "mode"),
        (["connections", "s2s", "children", "net", "start_action"], "later", "start_action"),
        (["connections", "s2s", "remote_addrs"], ["192.0.2.300"], "remote_addrs[0]"),
        (["connections", "s2s", "version"], 3, "version"),
        (["connections", "s2s", "colour"], "blue", "connections.s2s.colour"),
        (["daemon", "tun"], 7, "daemon.tun"),
        (["secrets", "ike-s2s", "secret"], "", "secret"),
        (["connections", "s2s", "fragmentation"], "force", "connections.s2s.fragmentation"),
        (["daemon", "fragment_size"], 100, "daemon.fragment_size"),
        (["daemon", "fragment_size"], "big", "daemon.fragment_size"),
    ],
)
def test_mistakes_are_named(path: list[str], value: object, named: str) -> None:
    with pytest.raises(LarvalError) as info:
        parse_config(_with(path, value), "larval.toml")
    assert "larval.toml" in str(info.value) and named in str(info.value)


def test_larval_run_with_a_bad_file_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[connections.s2s]\nversion = 2\nlocal_addrs = ["192.0.2.2"]\n'
        'remote_addrs = ["192.0.2.1"]\nproposals = ["aes999-sha256-x25519"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "larval", "run", "-c", str(bad)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "bad.toml" in line and "proposals[0]" in line and "aes999" in line
    missing = subprocess.run(
        [sys.executable, "-m", "larval", "run", "-c", str(tmp_path / "none.toml")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert missing.returncode == 2 and "none.toml" in missing.stderr


def test_config_error_is_a_larval_error() -> None:

    assert issubclass(ConfigError, LarvalError)
