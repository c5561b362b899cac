"""The daemon's configuration file: DESIGN.md's format read, and every mistake named."""

from __future__ import annotations

import ipaddress
import logging
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.daemon.config import ConfigError, load_config, parse_config
from larval.errors import LarvalError
from larval.pfkey import decode
from larval.spd import Action, Direction, Flow, Mode, extended_acquire, regular_acquire

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
    "secrets": {"ike-s2s": {"ids": ["192.0.2.1", "192.0.2.2"], "secret": "psk-0123456789abcdef"}},
}


def test_the_design_example_reads() -> None:
    cfg = parse_config(GOOD, "larval.toml")
    (conn,) = cfg.connections
    assert (
        conn.ike.encap and len(conn.ike.proposals) == 2 and conn.ike.psk == b"psk-0123456789abcdef"
    )
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
    _set(data, path, value)
    return data


def _set(data: dict[str, Any], path: list[str], value: object) -> None:
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["connections", "s2s", "proposals"], ["aes128-sha256-x99999"], "proposals[0]"),
        (
            ["connections", "s2s", "children", "net", "esp_proposals"],
            ["aes128gcm16", "aes999"],
            "connections.s2s.children.net.esp_proposals[1]",
        ),
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


# -- numbers, against the fields they end up in ------------------------------------------

CHILD = ["connections", "s2s", "children", "net"]
U64 = 2**64 - 1


@pytest.mark.parametrize(
    ("path", "value", "named", "allowed"),
    [
        ([*CHILD, "rekey_time"], "99999999999999999999d", "net.rekey_time", f"maximum {U64} s"),
        ([*CHILD, "life_time"], f"{U64 + 1}s", "net.life_time", f"maximum {U64} s"),
        ([*CHILD, "inactivity"], U64 + 1, "net.inactivity", f"maximum {U64} s"),
        (["connections", "s2s", "rekey_time"], "213503982334602d", "s2s.rekey_time", "maximum"),
        (["connections", "s2s", "dpd_delay"], f"{2**70}m", "s2s.dpd_delay", "maximum"),
        ([*CHILD, "rekey_bytes"], 18446744073709551617, "net.rekey_bytes", f"maximum {U64}"),
        ([*CHILD, "life_bytes"], U64 + 1, "net.life_bytes", f"maximum {U64}"),
        ([*CHILD, "replay_window"], 256, "net.replay_window", "maximum 255"),
        ([*CHILD, "replay_window"], -1, "net.replay_window", ">= 0"),
        (["daemon", "mtu"], 65536, "daemon.mtu", "maximum 65535"),
        (["daemon", "mtu"], 67, "daemon.mtu", "minimum 68"),
        (["daemon", "fragment_size"], 65536, "daemon.fragment_size", "maximum 65535"),
        (["daemon", "retransmit_tries"], 101, "daemon.retransmit_tries", "maximum 100"),
        (["daemon", "retransmit_timeout"], math.inf, "daemon.retransmit_timeout", "at most"),
        (["daemon", "retransmit_timeout"], math.nan, "daemon.retransmit_timeout", "at most"),
        (["daemon", "retransmit_timeout"], 0, "daemon.retransmit_timeout", "above 0"),
    ],
)
def test_numbers_are_range_checked(
    path: list[str], value: object, named: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(path, value), "larval.toml")
    assert named in str(info.value) and allowed in str(info.value)


def test_the_largest_lifetimes_reach_pf_key_intact() -> None:
    # What loads must encode: before, such values loaded and every ACQUIRE then failed.
    data = _with([*CHILD, "rekey_time"], U64)
    node = data["connections"]["s2s"]["children"]["net"]
    node.update(rekey_bytes=U64, replay_window=255)  # life_* default: rekey + 10 %, capped
    cfg = parse_config(data, "larval.toml")
    (child,) = cfg.connections[0].children
    assert child.rekey_time == child.life_time == U64
    out = next(p for p in cfg.policies if p.direction is Direction.OUT)
    assert out.lifetimes.life_time == out.lifetimes.life_bytes == U64
    flow = Flow(ipaddress.ip_address("203.0.113.5"), ipaddress.ip_address("198.51.100.5"))
    for msg in (regular_acquire(out, flow, 1), extended_acquire(out, flow, 1, 0)):
        assert decode(msg.encode()) == msg


def test_child_number_errors_name_the_child_key() -> None:
    # The child's keys go through the policy reader; the error names where they are written.
    with pytest.raises(ConfigError) as info:
        parse_config(_with([*CHILD, "rekey_bytes"], "lots"), "larval.toml")
    assert "connections.s2s.children.net.rekey_bytes" in str(info.value)
    assert "policies." not in str(info.value)


# -- types, exactly ----------------------------------------------------------------------

#: Every key with the kinds of value it takes; any other kind must be one ConfigError
#: naming the key. "list" means a list of strings.
KINDS: dict[str, tuple[str, ...]] = {
    "daemon": ("table",),
    "daemon.addresses": ("str", "list"),
    "daemon.tun": ("str",),
    "daemon.tun_addresses": ("str", "list"),
    "daemon.control_socket": ("str",),
    "daemon.pfkey_socket": ("str",),
    "daemon.mtu": ("int",),
    "daemon.plain_esp": ("bool",),
    "daemon.retransmit_timeout": ("int", "float"),
    "daemon.retransmit_tries": ("int",),
    "daemon.fragment_size": ("int",),
    "daemon.credentials": ("str",),
    "daemon.resolv_file": ("str",),
    "daemon.routing_table": ("int",),
    "daemon.routing_table_prio": ("int",),
    "daemon.state": ("str",),
    "daemon.state_key": ("str",),
    "daemon.save_keys": ("str",),
    "daemon.log": ("table",),
    "daemon.metrics": ("str",),
    "daemon.user": ("str",),
    "connections": ("table",),
    "connections.s2s": ("table",),
    "connections.s2s.version": ("int",),
    "connections.s2s.local_addrs": ("str", "list"),
    "connections.s2s.remote_addrs": ("str", "list"),
    "connections.s2s.proposals": ("str", "list"),
    "connections.s2s.encap": ("bool",),
    "connections.s2s.dpd_delay": ("int", "str"),
    "connections.s2s.local": ("table",),
    "connections.s2s.local.auth": ("str",),
    "connections.s2s.local.id": ("str",),
    "connections.s2s.local.certs": ("str", "list"),
    "connections.s2s.remote": ("table",),
    "connections.s2s.remote.auth": ("str",),
    "connections.s2s.remote.id": ("str",),
    "connections.s2s.remote.cacerts": ("str", "list"),
    "connections.s2s.children": ("table",),
    "connections.s2s.children.net": ("table",),
    "connections.s2s.rekey_time": ("int", "str"),
    "connections.s2s.mobike": ("bool",),
    "connections.s2s.aggressive": ("bool",),
    "connections.s2s.fragmentation": ("str",),
    "connections.s2s.short_psk": ("bool",),
    "connections.s2s.send_cert": ("str",),
    "connections.s2s.send_certreq": ("bool",),
    "connections.s2s.pools": ("str", "list"),
    "connections.s2s.vips": ("str", "list"),
    "connections.s2s.children.net.local_ts": ("str", "list"),
    "connections.s2s.children.net.remote_ts": ("str", "list"),
    "connections.s2s.children.net.esp_proposals": ("str", "list"),
    "connections.s2s.children.net.mode": ("str",),
    "connections.s2s.children.net.start_action": ("str",),
    "connections.s2s.children.net.rekey_time": ("int", "str"),
    "connections.s2s.children.net.life_time": ("int", "str"),
    "connections.s2s.children.net.rekey_bytes": ("int",),
    "connections.s2s.children.net.life_bytes": ("int",),
    "connections.s2s.children.net.replay_window": ("int",),
    "connections.s2s.children.net.inactivity": ("int", "str"),
    "pools": ("table",),
    "secrets": ("table",),
    "connections.s2s.pull": ("bool",),
    "secrets.ike-s2s": ("table",),
    "secrets.ike-s2s.ids": ("str", "list"),
    "secrets.ike-s2s.secret": ("str",),
}
SAMPLES: dict[str, object] = {
    "table": {"x": 1},
    "list": ["x"],
    "bool": True,
    "float": 2.0,
    "str": "x",
    "int": 1,
}


def test_every_key_is_listed() -> None:
    from larval.daemon import config

    listed = {k.rsplit(".", 1)[-1] for k in KINDS}
    keys = (config.DAEMON_KEYS, config.CONNECTION_KEYS, config.CHILD_KEYS, config.AUTH_KEYS,
            config.SECRET_KEYS)  # fmt: skip
    assert {k for group in keys for k in group} <= listed


def _wrong_types() -> list[tuple[str, str]]:
    cases = [(key, kind) for key, kinds in KINDS.items() for kind in SAMPLES if kind not in kinds]
    # A list of the wrong things where a list of strings goes.
    cases += [(key, f"list of {kind}") for key, kinds in KINDS.items() if "list" in kinds
              for kind in ("int", "bool", "table", "float")]  # fmt: skip
    return cases


@pytest.mark.parametrize(("key", "kind"), _wrong_types())
def test_a_wrong_type_is_named(key: str, kind: str) -> None:
    value = (
        [SAMPLES[kind.removeprefix("list of ")]] if kind.startswith("list of") else SAMPLES[kind]
    )
    data = _with(["daemon", "pfkey_socket"], "/tmp/p")  # present, so that it is checked too
    _set(data, key.split("."), value)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "larval.toml")
    assert f"larval.toml: {key}" in str(info.value)


@pytest.mark.parametrize("version", [True, False, 2.0, 1.0, "2"])
def test_version_is_exactly_an_integer(version: object) -> None:
    with pytest.raises(ConfigError, match=r"connections\.s2s\.version"):
        parse_config(_with(["connections", "s2s", "version"], version), "larval.toml")


TOML_VALUES = st.recursive(
    st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.datetimes(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(key=st.sampled_from(sorted(KINDS)), value=TOML_VALUES)
@settings(max_examples=400, deadline=None)
def test_any_value_at_any_key_loads_or_is_a_config_error(key: str, value: object) -> None:
    try:
        parse_config(_with(key.split("."), value), "larval.toml")
    except ConfigError as e:
        assert str(e).startswith("larval.toml: ")


@pytest.mark.parametrize("key", ["local_addrs", "remote_addrs"])
def test_a_missing_address_is_named_as_missing(key: str) -> None:
    data = _with(["connections", "s2s", "version"], 2)
    del data["connections"]["s2s"][key]
    with pytest.raises(ConfigError) as info:
        parse_config(data, "larval.toml")
    assert str(info.value).startswith(f"larval.toml: connections.s2s.{key}: missing")
    assert "null" not in str(info.value)


def test_a_tun_without_any_address_is_refused() -> None:
    data = {"daemon": {"tun": "larval0"}}
    with pytest.raises(ConfigError, match=r"daemon\.tun: the dataplane needs daemon\.addresses"):
        parse_config(data, "larval.toml")


# -- secrets -----------------------------------------------------------------------------


def test_a_short_psk_is_refused_by_name_and_length_never_shown() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(["secrets", "ike-s2s", "secret"], "hunter2"), "larval.toml")
    message = str(info.value)
    assert message.startswith("larval.toml: secrets.ike-s2s.secret: 7 bytes")
    assert "16" in message and "connections.s2s.short_psk = true" in message
    assert "hunter2" not in message


def test_a_connection_may_accept_a_short_psk() -> None:
    data = _with(["secrets", "ike-s2s", "secret"], "hunter2")
    data["connections"]["s2s"]["short_psk"] = True
    (conn,) = parse_config(data, "larval.toml").connections
    assert conn.ike.psk == b"hunter2"
    data["connections"]["s2s"]["short_psk"] = False
    with pytest.raises(ConfigError, match=r"secrets\.ike-s2s\.secret"):
        parse_config(data, "larval.toml")


def test_sixteen_bytes_is_enough_and_an_unused_short_secret_is_left_alone() -> None:
    data = _with(["secrets", "ike-s2s", "secret"], "0123456789abcdef")
    data["secrets"]["spare"] = {"ids": ["198.51.100.7"], "secret": "x"}
    (conn,) = parse_config(data, "larval.toml").connections
    assert conn.ike.psk == b"0123456789abcdef"


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


DESIGN_TOML = """
[daemon]
addresses = ["192.0.2.2"]
control_socket = "/tmp/never/control"

[connections.s2s]
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]

[secrets.ike-s2s]
secret = "interop-test-psk-0123456789"
"""


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o444])
def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "larval.toml", DESIGN_TOML, mode)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == (
        f"{path}: holds [secrets] but is readable by group or others (mode {mode:04o}); "
        "chmod 600 it"
    )
    assert "interop-test-psk" not in str(info.value)


def test_a_private_secrets_file_and_a_public_one_without_secrets_load(tmp_path: Path) -> None:
    assert load_config(str(_write(tmp_path / "a.toml", DESIGN_TOML, 0o600))).connections
    assert load_config(str(_write(tmp_path / "b.toml", DESIGN_TOML, 0o400))).connections
    public = _write(tmp_path / "c.toml", '[daemon]\ncontrol_socket = "/tmp/c"\n', 0o644)
    assert not load_config(str(public)).connections
    assert not load_config(str(_write(tmp_path / "d.toml", "[secrets]\n", 0o644))).connections


# -- the file itself ---------------------------------------------------------------------


def test_invalid_utf8_names_the_offset_never_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "larval.toml"
    path.write_bytes(b'[daemon]\ntun = "\xe9t\xe9"\n')
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: not UTF-8 at byte 16"
    assert "xe9" not in str(info.value) and "\\x" not in str(info.value)


def test_a_directory_or_a_huge_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Is a directory"):
        load_config(str(tmp_path))
    with pytest.raises(ConfigError, match="larger than 16 MiB"):
        load_config("/dev/zero")


def test_no_connections_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "larval.toml", "", 0o644)
    with caplog.at_level(logging.WARNING, logger="larval.daemon"):
        cfg = load_config(str(path))
    assert not cfg.connections
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "no [connections]" in record.getMessage() and "nothing" in record.getMessage()


# -- daemon.state and daemon.state_key ----------------------------------------------------


def test_no_state_keeps_nothing_and_the_key_defaults_beside_the_store() -> None:
    cfg = parse_config(GOOD, "larval.toml")
    assert (cfg.state, cfg.state_key) == (None, None)
    cfg = parse_config(_with(["daemon", "state"], "/var/lib/larval/state.db"), "larval.toml")
    assert (cfg.state, cfg.state_key) == ("/var/lib/larval/state.db", "/var/lib/larval/state.key")
    data = _with(["daemon", "state"], "/var/lib/larval/state.db")
    data["daemon"]["state_key"] = "/etc/larval/state.key"
    cfg = parse_config(data, "larval.toml")
    assert (cfg.state, cfg.state_key) == ("/var/lib/larval/state.db", "/etc/larval/state.key")


@pytest.mark.parametrize(
    ("state", "state_key", "named", "why"),
    [
        ("state.db", None, "daemon.state", "is not an absolute path"),
        ("", None, "daemon.state", "is not a path"),
        ("/var/lib/larval/", None, "daemon.state", "names a directory"),
        ("/var/lib/larval/..", None, "daemon.state", "names a directory"),
        ("/", None, "daemon.state", "names a directory"),
        ("/var/lib/a\0b", None, "daemon.state", "holds no NUL"),
        ("/var/lib/larval/state.db", "state.key", "daemon.state_key", "not an absolute path"),
        ("/var/lib/larval/state.db", "/etc/", "daemon.state_key", "names a directory"),
        ("/var/lib/larval/s.db", "/var/lib/larval/s.db", "daemon.state_key", "is the store"),
        (None, "/etc/larval/state.key", "daemon.state_key", "without daemon.state"),
    ],
)
def test_a_bad_state_path_is_named(
    state: str | None, state_key: str | None, named: str, why: str
) -> None:
    data = _with(["daemon", "tun"], "larval0")
    if state is not None:
        data["daemon"]["state"] = state
    if state_key is not None:
        data["daemon"]["state_key"] = state_key
    with pytest.raises(ConfigError) as info:
        parse_config(data, "larval.toml")
    assert str(info.value).startswith(f"larval.toml: {named}: ")
    assert why in str(info.value)


def test_a_changed_state_path_takes_a_restart() -> None:
    from larval.daemon.reload import daemon_changes

    running = parse_config(_with(["daemon", "state"], "/var/lib/larval/state.db"), "larval.toml")
    fresh = parse_config(_with(["daemon", "state"], "/var/lib/larval/other.db"), "larval.toml")
    assert daemon_changes(running, fresh) == ["state"]  # the key is beside both
    fresh = parse_config(_with(["daemon", "state"], "/srv/larval/state.db"), "larval.toml")
    assert daemon_changes(running, fresh) == ["state", "state_key"]
    assert daemon_changes(running, running) == []
