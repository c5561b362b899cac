"""The TOML policy file: good files and the exact messages of bad ones."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from larval.pfkey import AuthAlg, EncryptAlg
from larval.spd import (
    ANY_PORTS,
    Action,
    Direction,
    Lifetimes,
    Mode,
    PolicyFileError,
    Selector,
    Spd,
    Tunnel,
    load_policy_file,
    load_policy_text,
    policies_from_dict,
    policy_to_dict,
)

GOOD = """
[policies.s2s]
local_ts = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24", "2001:db8::/32"]
action = "protect"
mode = "tunnel"
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
esp_proposals = ["aes128gcm16", "aes128-sha256"]
priority = 100
rekey_time = "1h"
life_time = "66m"

[policies.ike]
action = "bypass"
local_ts = ["0.0.0.0/0[udp/500]"]
remote_ts = ["0.0.0.0/0"]

[policies.drop]
action = "discard"
local_ts = ["10.0.0.0/8"]
remote_ts = ["0.0.0.0/0"]

[policies.host]
mode = "transport"
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
remote_ts = ["[tcp/22]"]
rekey_time = 600
rekey_bytes = 1000
"""


def test_good_file(tmp_path: Path) -> None:
    path = tmp_path / "larval.toml"
    path.write_text(GOOD)
    policies = load_policy_file(path)
    # Two directions per entry and selector pair; the IPv6 remote_ts pairs with no
    # IPv4 local_ts and is narrowed away, as swanctl does.
    assert [(p.name, p.direction) for p in policies] == [
        (n, d) for n in ("s2s", "ike", "drop", "host") for d in (Direction.OUT, Direction.IN)
    ]
    s2s_out, s2s_in = policies[0], policies[1]
    assert s2s_out.selector == Selector.of("203.0.113.0/24", "198.51.100.0/24")
    assert s2s_in.selector == s2s_out.selector  # local/remote terms: the same selector
    assert s2s_out.action is Action.PROTECT and s2s_out.mode is Mode.TUNNEL
    assert s2s_out.tunnel == Tunnel.of("192.0.2.2", "192.0.2.1")
    assert [(p.encrypt, p.auth) for p in s2s_out.proposals] == [
        (EncryptAlg.AES_GCM_16, 0),
        (EncryptAlg.AES, AuthAlg.SHA256HMAC),
    ]
    assert s2s_out.priority == 100
    assert s2s_out.lifetimes == Lifetimes(3600, 3960, 0, 0)

    ike = policies[2]
    assert ike.action is Action.BYPASS and ike.proposals == () and ike.tunnel is None
    assert ike.selector == Selector.of("0.0.0.0/0", "0.0.0.0/0", 17, 500)
    assert policies[4].action is Action.DISCARD

    host = policies[6]
    # "dynamic" selectors: the host addresses, with the protocol/port given.
    assert host.selector == Selector.of("192.0.2.2/32", "192.0.2.1/32", 6, ANY_PORTS, 22)
    assert host.mode is Mode.TRANSPORT and host.tunnel is None
    assert host.lifetimes == Lifetimes(600, 660, 1000, 1100)  # life = rekey + 10 %

    spd = Spd()
    spd.add_all(policies)
    hit = spd.lookup("out", "203.0.113.9", "198.51.100.9")
    assert hit is not None and hit.name == "s2s"


def test_policy_to_dict_is_json() -> None:
    policies = load_policy_text(GOOD, "larval.toml")
    spd = Spd()
    stored = spd.add_all(policies)
    assert policy_to_dict(stored[0]) == {
        "name": "s2s",
        "direction": "out",
        "action": "protect",
        "priority": 100,
        "reqid": 1,
        "local_ts": "203.0.113.0/24",
        "remote_ts": "198.51.100.0/24",
        "mode": "tunnel",
        "local_addrs": ["192.0.2.2"],
        "remote_addrs": ["192.0.2.1"],
        "esp_proposals": ["aes128gcm16", "aes128-sha256"],
        "rekey_time": 3600,
        "life_time": 3960,
        "rekey_bytes": 0,
        "life_bytes": 0,
        "replay_window": 32,
    }
    assert policy_to_dict(stored[2]) == {
        "name": "ike",
        "direction": "out",
        "action": "bypass",
        "priority": stored[2].priority,
        "reqid": 3,
        "local_ts": "0.0.0.0/0[udp/500]",
        "remote_ts": "0.0.0.0/0[udp]",  # the protocol is the selector's, both sides
    }
    json.dumps([policy_to_dict(p) for p in stored])


def test_empty_file_and_embedded_table() -> None:
    assert load_policy_text("") == []
    got = policies_from_dict(
        {"p": {"local_ts": ["::1/128"], "remote_ts": ["::2/128"], "mode": "transport"}}, "x"
    )
    assert got[0].selector.local == ipaddress.ip_network("::1/128")


BASE = """
[policies.s2s]
local_ts = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
"""

BAD = [
    ('mode = "tunel"', 'larval.toml: policies.s2s.mode: "tunel" is not one of tunnel, transport'),
    (
        'action = "allow"',
        'larval.toml: policies.s2s.action: "allow" is not one of bypass, discard, protect',
    ),
    (
        "rekey = 5",
        "larval.toml: policies.s2s.rekey: unknown key; allowed: local_ts, remote_ts, action, "
        "mode, local_addrs, remote_addrs, esp_proposals, priority, rekey_time, life_time, "
        "rekey_bytes, life_bytes, replay_window",
    ),
    (
        'esp_proposals = ["aes128gcm16", "aes512-sha256"]',
        "larval.toml: policies.s2s.esp_proposals[1]: unknown keyword 'aes512' in ESP "
        "proposal 'aes512-sha256'; allowed: aes128, aes192, aes256, aes128gcm16, aes192gcm16, "
        "aes256gcm16, aes128gcm128, aes192gcm128, aes256gcm128, chacha20poly1305, null, "
        "sha256, sha2_256, sha384, sha2_384, sha512, sha2_512, modp2048, modp3072, ecp256, "
        "ecp384, ecp521, x25519, curve25519, x448, curve448, esn, noesn",
    ),
    (
        'esp_proposals = ["aes128"]',
        "larval.toml: policies.s2s.esp_proposals[0]: ESP proposal 'aes128': cipher aes128 "
        "needs an integrity algorithm, one of: sha256, sha2_256, sha384, sha2_384, sha512, "
        "sha2_512",
    ),
    (
        "esp_proposals = []",
        "larval.toml: policies.s2s.esp_proposals: [] is not a string or a non-empty list of them",
    ),
    (
        "esp_proposals = [1]",
        "larval.toml: policies.s2s.esp_proposals[0]: 1 is not a string",
    ),
    ('priority = "high"', 'larval.toml: policies.s2s.priority: "high" is not an integer >= 0'),
    ("priority = -3", "larval.toml: policies.s2s.priority: -3 is not an integer >= 0"),
    ("priority = true", "larval.toml: policies.s2s.priority: true is not an integer >= 0"),
    (
        'rekey_time = "1w"',
        'larval.toml: policies.s2s.rekey_time: "1w" is not a duration: seconds, or a number '
        "with s, m, h or d",
    ),
    (
        'life_time = "10m"',
        "larval.toml: policies.s2s.life_time: 600 s is shorter than rekey_time 3600 s; the "
        "hard lifetime must be the longer",
    ),
    (
        "rekey_bytes = 100\nlife_bytes = 50",
        "larval.toml: policies.s2s.life_bytes: 50 is below rekey_bytes 100; the hard limit "
        "must be the larger",
    ),
    (
        "replay_window = 1000",
        "larval.toml: policies.s2s.replay_window: 1000 is above the maximum 255",
    ),
    # Numbers end up in PF_KEY fields: 64-bit lifetimes (RFC 2367 §2.3.3), 32-bit priority.
    (
        'rekey_time = "99999999999999999999d"',
        'larval.toml: policies.s2s.rekey_time: "99999999999999999999d" is above the maximum '
        "18446744073709551615 s",
    ),
    (
        "life_time = 18446744073709551616",
        "larval.toml: policies.s2s.life_time: 18446744073709551616 is above the maximum "
        "18446744073709551615 s",
    ),
    (
        "rekey_bytes = 18446744073709551617",
        "larval.toml: policies.s2s.rekey_bytes: 18446744073709551617 is above the maximum "
        "18446744073709551615",
    ),
    (
        "life_bytes = 18446744073709551616",
        "larval.toml: policies.s2s.life_bytes: 18446744073709551616 is above the maximum "
        "18446744073709551615",
    ),
    (
        "priority = 4294967296",
        "larval.toml: policies.s2s.priority: 4294967296 is above the maximum 4294967295",
    ),
    ("replay_window = 2.0", "larval.toml: policies.s2s.replay_window: 2.0 is not an integer >= 0"),
    ("rekey_bytes = 1e3", "larval.toml: policies.s2s.rekey_bytes: 1000.0 is not an integer >= 0"),
]


@pytest.mark.parametrize(("line", "message"), BAD)
def test_bad_values(line: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        load_policy_text(BASE + line + "\n", "larval.toml")
    assert str(info.value) == message


BAD_ENTRIES = [
    (
        '[policies.t]\nlocal_ts = ["10.0.0.0/8"]\nremote_ts = ["0.0.0.0/0"]\n',
        "larval.toml: policies.t.local_addrs: tunnel mode needs a tunnel endpoint address here",
    ),
    (
        '[policies.t]\nlocal_ts = ["10.0.0.1/8"]\nremote_ts = ["0.0.0.0/0"]\nmode = "transport"\n',
        "larval.toml: policies.t.local_ts[0]: \"10.0.0.1/8\": '10.0.0.1/8' is not an address "
        "or prefix: 10.0.0.1/8 has host bits set",
    ),
    (
        '[policies.t]\nlocal_ts = ["10.0.0.0/8[tcp/80]"]\nremote_ts = ["0.0.0.0/0[udp]"]\n'
        'mode = "transport"\n',
        "larval.toml: policies.t.remote_ts[0]: protocol 17 differs from the local_ts protocol 6",
    ),
    (
        '[policies.t]\nlocal_ts = ["10.0.0.0/8"]\nremote_ts = ["::/0"]\nmode = "transport"\n',
        "larval.toml: policies.t.remote_ts: no selector of the same address family as a local_ts",
    ),
    (
        '[policies.t]\nmode = "transport"\nremote_ts = ["0.0.0.0/0"]\n',
        # local_ts not given: swanctl's default "dynamic".
        'larval.toml: policies.t.local_ts: "dynamic" takes its address from local_addrs, '
        "which is empty",
    ),
    (
        '[policies.t]\nlocal_addrs = ["192.0.2.300"]\n',
        'larval.toml: policies.t.local_addrs[0]: "192.0.2.300" is not an IPv4 or IPv6 address',
    ),
    (
        '[policies.t]\nlocal_addrs = ["192.0.2.1"]\nremote_addrs = ["::1"]\n',
        "larval.toml: policies.t.remote_addrs: ::1 is not of the family of local_addrs 192.0.2.1",
    ),
    (
        '[policies.t]\naction = "bypass"\nesp_proposals = ["aes128gcm16"]\n'
        'local_ts = ["0.0.0.0/0"]\nremote_ts = ["0.0.0.0/0"]\n',
        "larval.toml: policies.t.esp_proposals: only for action protect, not bypass",
    ),
    ("[daemon]\n", "larval.toml: daemon: unknown key; allowed: policies"),
    ("policies = 3\n", "larval.toml: policies: 3 is not a table"),
    ("[policies]\nt = 3\n", "larval.toml: policies.t: 3 is not a table"),
    (
        "[policies.t\n",
        "larval.toml: Expected ']' at the end of a table declaration (at line 1, column 12)",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_ENTRIES)
def test_bad_entries(text: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        load_policy_text(text, "larval.toml")
    assert str(info.value) == message


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyFileError) as info:
        load_policy_file(path)
    assert str(info.value) == f"{path}: No such file or directory"


def test_the_largest_lifetimes_load_and_defaults_stay_in_64_bits() -> None:
    most = 2**64 - 1
    (out, _) = load_policy_text(BASE + f"rekey_time = {most}\nrekey_bytes = {most}\n", "p")
    assert out.lifetimes == Lifetimes(most, most, most, most)  # + 10 %, capped at the field


@pytest.mark.parametrize(
    ("data", "offset"), [(b"\xff", 0), (b"# caf\xc3\n", 5), (b"[policies]\n# \xe9t\xe9\n", 13)]
)
def test_a_file_not_utf8_is_named_with_the_offset_never_the_byte(
    tmp_path: Path, data: bytes, offset: int
) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(data)
    with pytest.raises(PolicyFileError) as info:
        load_policy_file(path)
    assert str(info.value) == f"{path}: not UTF-8 at byte {offset}"


def test_a_directory_and_an_endless_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError) as info:
        load_policy_file(tmp_path)
    assert str(info.value) == f"{tmp_path}: Is a directory"
    with pytest.raises(PolicyFileError) as info:
        load_policy_file("/dev/zero")  # read with a bound, not until memory runs out
    assert str(info.value) == "/dev/zero: larger than 16 MiB, too large for a policy or config"
