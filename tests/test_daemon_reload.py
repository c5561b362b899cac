"""SIGHUP's reload: what came from the configuration file follows the file, what was
loaded over the control socket stays, and the log says what changed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from larval.daemon.config import parse_config
from larval.daemon.ike_daemon import IkeDaemon
from larval.daemon.reload import by_name, connection_changes, policy_changes
from tests.badinput import write_private

CONN = """
[connections.{name}]
version = 2
local_addrs = ["127.0.0.1"]
remote_addrs = ["127.0.0.2"]
proposals = ["aes128-sha256-x25519"]
local = {{ auth = "psk", id = "127.0.0.1" }}
remote = {{ auth = "psk", id = "127.0.0.2" }}

[connections.{name}.children.net]
local_ts = ["{local_ts}"]
remote_ts = ["198.51.100.0/24"]
esp_proposals = ["{esp}"]
mode = "tunnel"
start_action = "trap"
"""

BYPASS = """
[policies.bypass]
action = "bypass"
local_ts = ["0.0.0.0/0[udp/53]"]
remote_ts = ["0.0.0.0/0"]
"""


def config_text(
    tmp: Path, conns: dict[str, tuple[str, str]] | None = None, *, address: str = "127.0.0.1"
) -> str:
    """A daemon configuration with sockets under `tmp`; `conns`: name -> (local_ts, esp)."""
    conns = {"s2s": ("203.0.113.0/24", "aes128gcm16")} if conns is None else conns
    text = (f'[daemon]\naddresses = ["{address}"]\ncontrol_socket = "{tmp / "control"}"\n'
            f'pfkey_socket = "{tmp / "pfkey"}"\n')  # fmt: skip
    for name, (local_ts, esp) in conns.items():
        text += CONN.format(name=name, local_ts=local_ts, esp=esp)
    secret = '\n[secrets.ike]\nids = ["127.0.0.1", "127.0.0.2"]\nsecret = "0123456789abcdef-psk"\n'
    return (text + secret).replace("127.0.0.1", address)


def names(daemon: IkeDaemon) -> list[str]:
    return sorted({p.name for p in daemon.stack.spd.policies()})


def test_policy_changes_by_origin() -> None:
    old = parse_config(_toml(config_text(Path("/x"))), "a.toml")
    new = parse_config(
        _toml(config_text(Path("/x"), {"s2s": ("203.0.113.0/25", "aes128gcm16"),
                                       "b": ("192.0.2.0/24", "aes128-sha256")})), "a.toml",
    )  # fmt: skip
    installed = by_name(old.policies)
    same = policy_changes(installed, by_name(old.policies), set())
    assert not same and same.describe("policies") == ""
    changes = policy_changes(installed, by_name(new.policies), set())
    assert (changes.added, changes.removed, changes.changed) == (("b/net",), (), ("s2s/net",))
    assert changes.describe("policies") == "policies added b/net; changed s2s/net"
    # A name loaded over the control socket is the operator's: neither changed nor removed.
    control = policy_changes({**installed, "bypass": ()}, by_name(new.policies), {"s2s/net"})
    assert (control.added, control.changed, control.kept) == (("b/net",), (), ("s2s/net",))
    gone = policy_changes(by_name(new.policies), installed, set())
    assert gone.removed == ("b/net",)
    conns = connection_changes({c.ike.name: c for c in old.connections},
                               {c.ike.name: c for c in new.connections})  # fmt: skip
    assert (conns.added, conns.removed, conns.changed) == (("b",), (), ("s2s",))


def _toml(text: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(text)


def test_reload_keeps_control_policies_and_follows_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "larval.toml"
    write_private(path, config_text(tmp_path))
    daemon = IkeDaemon(str(path))
    assert names(daemon) == ["s2s/net"]
    daemon._policy_load({"op": "policy.load", "text": BYPASS, "source": "bypass.toml"})
    old_conn = daemon.keymgr.connections["s2s"]
    write_private(path, config_text(tmp_path, {"s2s": ("203.0.113.0/24", "aes128gcm16"),
                                           "b": ("192.0.2.0/24", "aes128-sha256")}))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    assert names(daemon) == ["b/net", "bypass", "s2s/net"]
    assert "policies added b/net; connections added b" in caplog.text
    assert daemon.keymgr.connections["s2s"] is old_conn  # unchanged: the same object
    # The file drops b and narrows s2s: b's policy goes, s2s's is replaced, the control
    # socket's stays.
    write_private(path, config_text(tmp_path, {"s2s": ("203.0.113.0/25", "aes128gcm16")}))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    assert names(daemon) == ["bypass", "s2s/net"]
    (out,) = [p for p in daemon.stack.spd.policies()
              if p.name == "s2s/net" and p.direction.value == "out"]  # fmt: skip
    assert "/25" in str(out.selector)
    assert (
        "policies removed b/net; changed s2s/net; connections removed b; changed s2s" in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    assert "nothing changed" in caplog.text
    # After a flush nothing is the control socket's: the next reload puts the file's back.
    daemon._policy_flush({"op": "policy.flush"})
    daemon.reload()
    assert names(daemon) == ["s2s/net"]


def test_a_control_policy_of_a_configured_name_wins_until_flush(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "larval.toml"
    write_private(path, config_text(tmp_path))
    daemon = IkeDaemon(str(path))
    mine = BYPASS.replace("[policies.bypass]", '[policies."s2s/net"]')
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon._policy_load({"op": "policy.load", "text": mine, "source": "mine.toml"})
        daemon.reload()
    assert {p.action.value for p in daemon.stack.spd.policies()} == {"bypass"}
    assert "policy s2s/net from mine.toml replaces the one of the configuration" in caplog.text
    assert "policy s2s/net stays as loaded over the control socket" in caplog.text
    daemon._policy_flush({"op": "policy.flush"})
    daemon.reload()
    assert {p.action.value for p in daemon.stack.spd.policies()} == {"protect"}


def test_a_file_that_does_not_load_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "larval.toml"
    write_private(path, config_text(tmp_path))
    daemon = IkeDaemon(str(path))
    before = daemon.stack.spd.policies()
    write_private(path, "[daemon]\naddresses = 5\n")
    daemon.reload()
    assert daemon.stack.spd.policies() == before and "s2s" in daemon.keymgr.connections


def test_daemon_settings_wait_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The IKE sockets are bound to [daemon].addresses at start: a reload that changes
    them must not make the daemon send from an address it has no socket on."""
    path = tmp_path / "larval.toml"
    write_private(path, config_text(tmp_path))
    daemon = IkeDaemon(str(path))
    write_private(path, config_text(tmp_path, address="127.0.0.9"))
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    assert daemon.config.addresses == ["127.0.0.1"]
    assert "[daemon] addresses changed; that takes a restart" in caplog.text
    assert "connections changed s2s" in caplog.text  # its local address did change


def test_a_policy_load_the_spd_refuses_changes_nothing(tmp_path: Path) -> None:
    """A file whose second policy the SPD refuses (the same selector twice) leaves the
    policies of those names as they were, the first one included."""
    from larval.errors import LarvalError

    path = tmp_path / "larval.toml"
    write_private(path, config_text(tmp_path))
    daemon = IkeDaemon(str(path))
    daemon._policy_load({"op": "policy.load", "text": BYPASS, "source": "bypass.toml"})
    before = daemon.stack.spd.policies()
    dup = BYPASS.replace("policies.bypass", "policies.dup")
    bad = BYPASS.replace("udp/53", "udp/54") + dup.replace(
        '["0.0.0.0/0"]', '["10.0.0.0/8", "10.0.0.0/8"]'
    )
    with pytest.raises(LarvalError, match="already has"):
        daemon._policy_load({"op": "policy.load", "text": bad, "source": "bad.toml"})
    assert daemon.stack.spd.policies() == before
    assert daemon.control_policies == {"bypass"}
    with pytest.raises(LarvalError, match="text"):
        daemon._policy_load({"op": "policy.load"})
