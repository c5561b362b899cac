"""The IKE setup benchmark: its VICI decoder, and a few larval setups end to end."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from larval.bench import ike
from larval.bench.charon import PLUGINS, Charon, ChildConfig, ConnConfig
from larval.bench.stores import EtcdMember
from larval.ike.identity import describe_subject, identity
from larval.net.netns import Netns
from larval.store.etcd import EtcdClient


def _kv(key: str, value: str) -> bytes:
    return bytes([3, len(key)]) + key.encode() + struct.pack("!H", len(value)) + value.encode()


def test_vici_decode_sections_lists_and_values() -> None:
    # child-updown { up = yes, s2s { child-sas { net-1 { local-ts [ 10.0.0.0/8 ] } } } }
    data = (
        _kv("up", "yes")
        + bytes([1, 3]) + b"s2s"
        + bytes([1, 9]) + b"child-sas"
        + bytes([1, 5]) + b"net-1"
        + bytes([4, 8]) + b"local-ts" + bytes([5]) + struct.pack("!H", 10) + b"10.0.0.0/8"
        + bytes([6])
        + bytes([2, 2, 2])
    )  # fmt: skip
    assert ike._vici_decode(data) == {
        "up": "yes",
        "s2s": {"child-sas": {"net-1": {"local-ts": ["10.0.0.0/8"]}}},
    }


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (a network namespace, UDP 500 and 4500)",
)
def test_larval_pair_completes_every_setup() -> None:
    result = ike._larval(20, 8)
    assert result["done"] == 20
    assert result["ike_sa_per_s"] > 0
    assert result["cpu_ms_per_ike_sa"] > 0


def test_bench_charon_config_shares_the_plugins_and_log_of_the_interop_one(tmp_path: Path) -> None:
    conn = ConnConfig("192.0.2.1", "192.0.2.2", "k", ChildConfig("10.1.0.0/16", "10.2.0.0/16"))
    Charon(Netns("peer"), tmp_path / "peer", loglevel=2).write_config(conn)
    ike._BenchCharon(Netns("bench"), tmp_path / "bench", loglevel=-1).write_config(conn)
    peer = (tmp_path / "peer" / "strongswan.conf").read_text()
    bench = (tmp_path / "bench" / "strongswan.conf").read_text()
    for conf, directory in ((peer, tmp_path / "peer"), (bench, tmp_path / "bench")):
        assert conf.startswith(f"charon {{\n    load = {PLUGINS}\n    load_modular = no\n")
        assert f"socket = unix://{directory / 'charon.vici'}\n" in conf
        assert f"path = {directory / 'charon.log'}\n" in conf
        assert conf.count("{") == conf.count("}")
    assert "    retransmit_timeout = 2.0\n    plugins {\n" in peer
    assert "            default = 2\n" in peer and "ike_name = yes" in peer
    assert peer.endswith(
        "}\nswanctl {\n    load = random nonce aes sha1 sha2 hmac openssl pem "
        "pkcs1 pkcs8 x509 pubkey\n}\n"
    )
    assert "    retransmit_timeout = 4.0\n    plugins {\n" in bench
    assert "            default = -1\n" in bench and "ike_name" not in bench
    assert "swanctl" not in bench and "aggressive" not in bench
    assert f"    cookie_threshold = {ike.COOKIE_THRESHOLD}\n" in bench
    assert "unique = never" in (tmp_path / "bench" / "swanctl" / "swanctl.conf").read_text()


def test_bench_larval_nodes_ask_for_no_cookies_as_the_charons_do_not() -> None:
    for me, peer in (("i", "r"), ("r", "i")):
        (conn,) = ike._node(me, peer).keymgr.connections.values()
        assert conn.ike.cookie_threshold == ike.COOKIE_THRESHOLD >= 1_000_000


def test_bench_certificates_are_what_both_suites_load(tmp_path: Path) -> None:
    """Each larval end proves itself with its certificate and checks the other's under the
    CA; each charon is given the same files and says the same in swanctl.conf."""
    credentials = ike._credentials(tmp_path / "credentials", "ecdsa", 256)
    for me, peer in (("i", "r"), ("r", "i")):
        (conn,) = ike._node(me, peer, credentials).keymgr.connections.values()
        local, remote = conn.ike.local_auth, conn.ike.remote_auth
        assert local is not None and remote is not None
        assert ike.CERT_ID[me] in describe_subject(local.cert.cert)
        assert conn.ike.remote_id == identity(ike.CERT_ID[peer])
        assert len(remote.trust.certreq_keyids()) == 1  # the one CA
    private = credentials / "private" / "i.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    child = ChildConfig("10.1.0.0/16", "10.2.0.0/16")
    conn_i = ConnConfig("192.0.2.1", "192.0.2.2", "unused", child, local_cert="i.pem",
                        local_id=ike.CERT_ID["i"], remote_id=ike.CERT_ID["r"])  # fmt: skip
    ike._BenchCharon(Netns("bench"), tmp_path / "charon", loglevel=-1).write_config(conn_i)
    swanctl = (tmp_path / "charon" / "swanctl" / "swanctl.conf").read_text()
    local = (
        "            auth = pubkey\n            certs = i.pem\n            id = i.bench.example\n"
    )
    assert local in swanctl
    assert "            auth = pubkey\n            id = r.bench.example\n" in swanctl
    assert "secrets" not in swanctl and "unused" not in swanctl and "psk" not in swanctl


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (a network namespace, UDP 500 and 4500)",
)
@pytest.mark.parametrize("case", list(ike.CERT_CASES))
def test_larval_pair_completes_every_setup_with_certificates(tmp_path: Path, case: str) -> None:
    credentials = ike._credentials(tmp_path, *ike.CERT_CASES[case])
    result = ike._larval(10, 4, credentials)
    assert result["done"] == 10
    assert result["ike_sa_per_s"] > 0


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (a network namespace, UDP 500 and 4500)",
)
def test_larval_pair_with_the_store_on_writes_every_ike_sa_and_child_sa(tmp_path: Path) -> None:
    result = ike._larval(20, 8, state=tmp_path)
    assert result["done"] == 20
    # What a restart of either end would find: every IKE SA and its CHILD_SA.
    for side in ("initiator", "responder"):
        store = result["store"][side]
        assert store["records"] == {"ike_sa": 20, "child_sa": 20}
        assert 1 <= store["writes"] <= 20 + 20  # batched: at most one per datagram
    for me in ("i", "r"):
        assert (tmp_path / me / "state.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (a network namespace, UDP 500 and 4500)",
)
def test_larval_pair_with_the_store_on_writes_by_group_commit(tmp_path: Path) -> None:
    """The bench's nodes write as `larval run` does: one write per pass of the loop, for
    every IKE SA that changed in it, not one per IKE SA (which would be 200 or more)."""
    result = ike._larval(200, 64, state=tmp_path)
    assert result["done"] == 200
    for side in ("initiator", "responder"):
        store = result["store"][side]
        assert store["records"] == {"ike_sa": 200, "child_sa": 200}
        assert store["writes"] < 100, store


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (a network namespace, UDP 500 and 4500)",
)
def test_bench_ike_prints_the_store_cost_beside_the_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval.bench", "ike", "--setups", "20", "--cert-setups", "0",
         "--ike-runs", "1", "--store", "both"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    ratio = [line for line in lines if line.startswith("  store_ratio: ")]
    assert len(ratio) == 1 and float(ratio[0].split(": ")[1]) > 0
    (cost,) = [line for line in lines if line.startswith("  store_cost: ")]
    assert "IKE SAs/s on/off" in cost and "CPU/IKE SA on/off" in cost and "goal of 10%" in cost
    assert "  target: {'ratio': 1.5, 'store_ratio': 0.9, 'store_cpu_ratio': 1.1}" in lines
    (records,) = [line for line in lines if line.startswith("  store_records: ")]
    assert records.count("'ike_sa': 20") == 2 and records.count("'child_sa': 20") == 2
    # The store-off figures are still the first ones, measured in the same run.
    assert lines.index(ratio[0]) > lines.index(next(x for x in lines if "ike_sa_per_s" in x))


def test_bench_ike_refuses_an_unknown_store_mode() -> None:
    with pytest.raises(ValueError, match="--store 'sqlite': one of off, on, both, etcd"):
        ike.run(store="sqlite")


def test_store_figures_pair_the_runs_with_the_store_on_and_off() -> None:
    def one(rate: float, cpu: float, written: int) -> dict[str, Any]:
        store = {"records": {"ike_sa": written, "child_sa": written}, "writes": written}
        return {"ike_sa_per_s": rate, "cpu_ms_per_ike_sa": cpu,
                "store": {"initiator": store, "responder": store}}  # fmt: skip

    every = {
        "larval": [one(400.0, 2.0, 0), one(200.0, 4.0, 0), one(300.0, 3.0, 0)],
        "larval_store": [one(380.0, 2.2, 10), one(180.0, 4.4, 11), one(270.0, 3.3, 12)],
    }
    figures = ike._store_figures(every)
    assert figures["store_ratio"] == 0.9  # median of 0.95, 0.9, 0.9
    assert figures["store_cpu_ratio"] == 1.1
    # The median run with the store on is the one reported, with its records.
    assert figures["store_ike_sa_per_s"] == 270.0 and figures["store_cpu_ms_per_ike_sa"] == 3.3
    assert figures["store_records"]["responder"]["records"] == {"ike_sa": 12, "child_sa": 12}
    assert figures["store_cost"].startswith("IKE SAs/s on/off 0.900: +10.0% cost, above")
    cpu = "; CPU/IKE SA on/off 1.100: +10.0% cost, above the goal of 10% (3 runs)"
    assert figures["store_cost"].endswith(cpu)
    assert ike._store_figures({"larval": every["larval"]}) == {}


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("etcd") is None,
    reason="needs root, iproute2 (a network namespace, UDP 500 and 4500) and etcd 3.4",
)
def test_larval_pair_with_the_store_in_etcd_writes_every_ike_sa_there(tmp_path: Path) -> None:
    with EtcdMember(tmp_path / "etcd") as member:
        result = ike._larval(10, 4, state=member.endpoint)
        proc = member.proc
        assert proc is not None
        # Each end is the owner of a group of its own, and its records are in it.
        keys, _ = EtcdClient([member.endpoint]).range(b"/larval/bench-")
    assert result["done"] == 10
    for side in ("initiator", "responder"):
        assert result["store"][side]["records"] == {"ike_sa": 10, "child_sa": 10}
    paths = [kv.key.decode() for kv in keys]
    assert len([p for p in paths if "/state/ike_sa/" in p]) == 20
    assert len([p for p in paths if p.endswith("/owner")]) == 2
    assert proc.poll() is not None  # the member is gone with the block
    assert not (tmp_path / "etcd" / "data").exists()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (a network namespace, UDP 500 and 4500)",
)
def test_a_store_that_cannot_be_opened_is_said_in_the_figures_and_nothing_waits() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    result = ike._larval(5, 2, state=endpoint)
    assert result["done"] == 0 and result["ike_sa_per_s"] is None
    for side in ("initiator", "responder"):
        assert "etcd: no endpoint answers" in result["store"][side]["error"]
