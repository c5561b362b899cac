"""`larval demo`: two hosts, the first packet held through ACQUIRE and IKEv2, traffic, the
CHILD_SA's soft lifetime, DELETE; and the stack-only run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from larval import demo, demo_ladder, demo_remote_access


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return demo_ladder.run().as_json()


def test_ike_sa_established_on_both_hosts(result: dict[str, Any]) -> None:
    ike_sas = result["ike_sas"]
    assert sorted(sa["host"] for sa in ike_sas) == ["A", "B"]
    assert all(sa["state"] == "established" for sa in ike_sas)
    assert {sa["proposal"] for sa in ike_sas} == {"aes128-sha256-x25519"}
    initiator = next(sa for sa in ike_sas if sa["initiator"])
    assert initiator["host"] == "A"


def test_one_child_sa_per_host_with_paired_spis(result: dict[str, Any]) -> None:
    children = {sa["host"]: sa for sa in result["child_sas"]}
    assert len(result["child_sas"]) == 2 and set(children) == {"A", "B"}
    a, b = children["A"], children["B"]
    for sa in (a, b):
        assert int(sa["spi_in"], 16) and int(sa["spi_out"], 16)
        assert sa["esp"] == "aes128gcm16"
    assert (a["spi_in"], a["spi_out"]) == (b["spi_out"], b["spi_in"])
    assert a["local_ts"] == b["remote_ts"] == ["198.51.100.0/24"]
    assert a["remote_ts"] == b["local_ts"] == ["203.0.113.0/24"]


def test_first_packet_held_then_delivered_and_nothing_dropped(result: dict[str, Any]) -> None:
    packets = result["packets"]
    assert packets["sent"] >= 1
    assert packets["delivered"] >= packets["sent"] - 0
    assert packets["held"] >= 1
    assert packets["dropped"] == 0
    assert result["first_packet"] == {"held": True, "delivered": True}


def test_soft_expire_rekeys_the_child_sa(result: dict[str, Any]) -> None:
    rekey = result["rekey"]
    expires = [e for host in rekey["expires"].values() for e in host]
    assert expires and {e["kind"] for e in expires} == {"soft"}
    assert rekey["rekeyed"]
    for host in ("A", "B"):
        before = {p["spi_in"] for p in rekey["before"][host]}
        after = {p["spi_in"] for p in rekey["after"][host]}
        assert len(before) == len(after) == 1 and before.isdisjoint(after)


def test_nothing_left_after_delete(result: dict[str, Any]) -> None:
    after = result["after_delete"]
    assert after["ike_sas"] == [] and after["child_sas"] == []
    assert after["sas"] == {"A": 0, "B": 0}


def test_json_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"ike_sas", "child_sas", "packets", "after_delete"} <= set(data)


def test_stack_only_still_shows_the_race(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(as_json=True, stack_only=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["packets"]["delivered"] == data["packets"]["sent"] == 2
    assert data["sadb_counters"]["lost_races"] == 1


def test_larval_demo_prints_the_ladder() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval", "demo"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"A ─+IKE_SA_INIT request #0 \(SA, KE, Ni, N\(NAT_D\)x2.*\) :500─+▶ B", out)
    assert re.search(r"A ◀─+IKE_SA_INIT response #0 \(SA, KE, Nr, N\(NAT_D\)x2.*\) :500─+ B", out)
    assert re.search(r"A ─+ESP spi [0-9a-f]{8} seq 1 :4500 \[ICMP echo request", out)
    assert "stack: ACQUIRE seq 4294967295" in out
    assert "IKE_AUTH request #1 SK{…}" in out
    assert "held packet released" in out
    assert "EXPIRE (soft)" in out
    assert "CREATE_CHILD_SA request" in out
    assert "After the DELETE: IKE_SAs 0, CHILD_SAs 0, SAs in the stacks: A 0, B 0" in out


@pytest.fixture(scope="module")
def ikev1() -> dict[str, Any]:
    return demo_ladder.run(version=1).as_json()


def test_ikev1_demo_holds_early_esp_on_the_larval_sa(ikev1: dict[str, Any]) -> None:
    """QM3 held back: A's first two packets reach B's LARVAL SA, wait there, and B's
    UPDATE releases them in order; nothing is dropped."""
    window = ikev1["seed_window"]
    assert window == {"held_on_larval": 2, "released": 2, "delivered_in_order": True}
    assert ikev1["counters"]["B"]["sadb"] == {"held": 2, "released": 2}
    assert ikev1["packets"]["dropped"] == 0
    assert ikev1["packets"]["delivered"] == ikev1["packets"]["sent"]
    assert ikev1["first_packet"] == {"held": True, "delivered": True}
    assert {sa["version"] for sa in ikev1["ike_sas"]} == {1}
    assert {sa["esp"] for sa in ikev1["child_sas"]} == {"aes128-sha256"}
    assert ikev1["after_delete"]["sas"] == {"A": 0, "B": 0}


def test_ikev1_demo_ladder_shows_qm3_held_back(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(ikev1=True) == 0
    out = capsys.readouterr().out
    assert re.search(r"A ─+MAIN_MODE \(SA, V, V.*\) :500─+▶ B", out)
    assert re.search(r"A ─+QUICK_MODE #[0-9a-f]{8} \*\{…\} :4500 HELD BACK─+▶ B", out)
    held = out.index("ESP for a LARVAL SA")
    assert held < out.index("UPDATE released 2 held packet(s), in arrival order")
    assert "ISAKMP SA established, aes128-sha256-modp2048" in out


@pytest.fixture(scope="module")
def remote_access() -> dict[str, Any]:
    return demo_remote_access.run().as_json()


def test_remote_access_notebook_gets_an_address_and_reaches_the_home_server(
    remote_access: dict[str, Any],
) -> None:
    """carol's notebook is leased 10.3.0.1 by the gateway's pool, its CHILD_SA narrowed to
    it; both pings from it reach the home server and both answers come back."""
    assert remote_access["virtual_ip"] == "10.3.0.1"
    assert remote_access["lease"] == {
        "online": [{"address": "10.3.0.1", "identity": "carol"}], "offline": []
    }  # fmt: skip
    gateway = next(sa for sa in remote_access["ike_sas"] if sa["host"] == "B")
    assert gateway["auth_remote"]["method"] == "eap-mschapv2"
    assert gateway["auth_remote"]["identity"] == "carol"
    assert gateway["virtual_ips"] == ["10.3.0.1"]
    notebook = next(c for c in remote_access["child_sas"] if c["host"] == "A")
    assert notebook["local_ts"] == ["10.3.0.1/32"]
    assert notebook["remote_ts"] == ["203.0.113.0/24"]
    assert remote_access["round_trip"] == {
        "sent": 2, "replies": 2, "from": ["203.0.113.10"], "to": ["10.3.0.1"],
        "server_saw": ["10.3.0.1"],
    }  # fmt: skip
    assert notebook["packets_out"] == notebook["packets_in"] == 2
    after = remote_access["after_hang_up"]
    assert after["ike_sas"] == 0 and after["sas"] == {"A": 0, "B": 0}
    assert after["leases"] == {"online": [], "offline": [{"address": "10.3.0.1",
                                                          "identity": "carol"}]}  # fmt: skip


def test_remote_access_ladder_shows_eap_the_configuration_payload_and_the_lease() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval", "demo", "--remote-access"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"A ─+IKE_SA_INIT request #0 \(SA, KE, Ni, ", out)
    assert re.search(r"A ─+IKE_AUTH request #1 SK\{IDi, CERTREQ, "
                     r"CP\(CFG_REQUEST: IP4_ADDRESS, IP4_DNS\), "
                     r"SA, TSi, TSr\} :4500─+▶ B", out)  # fmt: skip
    steps = [
        r"A ◀─+IKE_AUTH response #1 SK\{IDr, CERT, AUTH, EAP\(Request/Identity\)\}",
        r"A ─+IKE_AUTH request #2 SK\{EAP\(Response/Identity carol\)\}",
        r"A ◀─+IKE_AUTH response #2 SK\{EAP\(Request/MSCHAPv2 Challenge\)\}",
        r"A ─+IKE_AUTH request #3 SK\{EAP\(Response/MSCHAPv2 Response\)\}",
        r"A ◀─+IKE_AUTH response #3 SK\{EAP\(Request/MSCHAPv2 Success\)\}",
        r"A ─+IKE_AUTH request #4 SK\{EAP\(Response/MSCHAPv2 Success\)\}",
        r"A ◀─+IKE_AUTH response #4 SK\{EAP\(Success\)\}",
        r"A ─+IKE_AUTH request #5 SK\{AUTH\}",
        r"A ◀─+IKE_AUTH response #5 SK\{AUTH, CP\(CFG_REPLY: IP4_ADDRESS 10\.3\.0\.1, "
        r"IP4_DNS 203\.0\.113\.53\), SA, TSi, TSr\}",
        r"⇒ lease: pool rw gives 10\.3\.0\.1 to carol \(online\)",
        r"ESP spi [0-9a-f]{8} seq 1 :4500 \[ICMP echo request 10\.3\.0\.1 → 203\.0\.113\.10",
        r"home server 203\.0\.113\.10: echo request from 10\.3\.0\.1, answering",
        r"A ◀─+ESP spi [0-9a-f]{8} seq 1 :4500 \[ICMP echo reply 203\.0\.113\.10 → 10\.3\.0\.1",
        r"A │ stack → host: ICMP echo reply 203\.0\.113\.10 → 10\.3\.0\.1 seq 1",
        r"offline leases: 10\.3\.0\.1 \(carol\)",
    ]
    where = 0
    for step in steps:  # in this order
        found = re.compile(step).search(out, where)
        assert found, step
        where = found.end()
    assert demo_remote_access.PASSWORD not in out


def test_remote_access_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(as_json=True, remote_access=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["round_trip"]["replies"] == 2 and data["virtual_ip"] == "10.3.0.1"


def test_remote_access_takes_neither_stack_only_nor_ikev1() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval", "demo", "--remote-access", "--ikev1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "demo --remote-access is IKEv2 between two hosts" in proc.stderr
