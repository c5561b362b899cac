"""`larval pools` as a user runs it: against a daemon with pools (text and JSON), against
a daemon with none; and `larval status`'s line for a virtual address."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from larval.commands.daemon import print_status
from larval.commands.pools import print_pools
from tests.badinput import larval, write_private
from tests.badinput.test_daemon import CONN, larval_run, larval_stack, loopback_pair

if os.geteuid() != 0:
    pytest.skip("larval run binds UDP 500: root only", allow_module_level=True)

POOLS = """
[pools.rw]
addrs = "10.3.0.0/24"
dns = ["10.3.0.1"]
reserved = {{ "carol@example.org" = "10.3.0.7" }}

[pools.rw6]
addrs = "2001:db8:3::10-2001:db8:3::1f"
"""


def _config(tmp: Path, me: str, peer: str) -> str:
    daemon = (f'[daemon]\naddresses = ["{me}"]\ncontrol_socket = "{tmp / "control"}"\n'
              f'pfkey_socket = "{tmp / "pfkey"}"\n')  # fmt: skip
    conn = CONN.format(me=me, peer=peer, local_ts="10.1.0.0/16", remote_ts="10.3.0.0/24")
    proposals = 'proposals = ["aes128-sha256-modp2048"]'
    conn = conn.replace(proposals, proposals + '\npools = ["rw", "rw6"]')
    return daemon + POOLS.format() + conn


def test_larval_pools_lists_the_pools_of_the_daemon(tmp_path: Path) -> None:
    me, peer = loopback_pair()
    with larval_run(tmp_path, me, peer, "", "", text=_config(tmp_path, me, peer)) as d:
        text, as_json = d.cli("pools"), d.cli("pools", "--json")
        assert text.returncode == as_json.returncode == 0, text.stderr + as_json.stderr
        assert text.stdout == (
            "rw: 10.3.0.0/24, 254 addresses, 0 online, 0 offline\n"
            "rw6: 2001:db8:3::10-2001:db8:3::1f, 16 addresses, 0 online, 0 offline\n"
        )
        answer = json.loads(as_json.stdout)
        assert [(p["name"], p["size"], p["online"], p["offline"]) for p in answer["pools"]] == [
            ("rw", 254, [], []),
            ("rw6", 16, [], []),
        ]
        assert answer["pools"][0]["reserved"] == [
            {"identity": "carol@example.org", "address": "10.3.0.7"}
        ]


def test_larval_pools_without_pools(tmp_path: Path) -> None:
    me, peer = loopback_pair()
    with larval_run(tmp_path, me, peer, "10.1.0.0/16", "10.2.0.0/16") as d:
        text = d.cli("pools")
        assert (text.returncode, text.stdout) == (0, "no pools\n")
        assert json.loads(d.cli("pools", "--json").stdout) == {"pools": []}


def test_leases_are_listed_one_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_pools([{
        "name": "rw", "addrs": "10.3.0.0/24", "size": 254, "reserved": [],
        "online": [{"identity": "carol@example.org", "address": "10.3.0.1"}],
        "offline": [{"identity": "192.0.2.3", "address": "10.3.0.2"}],
    }])  # fmt: skip
    assert capsys.readouterr().out == (
        "rw: 10.3.0.0/24, 254 addresses, 1 online, 1 offline\n"
        f"  {'10.3.0.1':<39} online  carol@example.org\n"
        f"  {'10.3.0.2':<39} offline 192.0.2.3\n"
    )


def test_status_shows_the_virtual_address(capsys: pytest.CaptureFixture[str]) -> None:
    sa = {"name": "rw", "state": "established", "initiator": False, "spi_i": "01", "spi_r": "02",
          "remote": "192.0.2.1", "remote_port": 4500, "encapsulated": False, "suite": "",
          "virtual_ips": ["10.3.0.1", "2001:db8:3::10"]}  # fmt: skip
    print_status({"ike_sas": [sa, {**sa, "initiator": True}], "child_sas": []})
    out = capsys.readouterr().out
    assert "  virtual IP (the peer's): 10.3.0.1, 2001:db8:3::10\n" in out
    assert "  virtual IP (this end's): 10.3.0.1, 2001:db8:3::10\n" in out


def test_sighup_replaces_a_changed_pool_and_says_so(tmp_path: Path) -> None:
    me, peer = loopback_pair()
    text = _config(tmp_path, me, peer)
    with larval_run(tmp_path, me, peer, "", "", text=text) as d:
        write_private(d.config, text.replace("2001:db8:3::1f", "2001:db8:3::2f"))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("configuration reloaded")
        assert "pools changed rw6" in d.log_text()
        answer = json.loads(d.cli("pools", "--json").stdout)
        assert [p["size"] for p in answer["pools"]] == [254, 32]


def test_larval_pools_against_larval_stack_says_there_is_no_key_manager(tmp_path: Path) -> None:
    with larval_stack(tmp_path) as control:
        result = larval("pools", "--control-socket", control)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"larval: no key manager runs here ({control} is `larval stack`'s): no pools\n"
    )
