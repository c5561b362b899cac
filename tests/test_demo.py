"""`larval demo`: two hosts, the first packet held through ACQUIRE and IKEv2, traffic, the
CHILD_SA's soft lifetime, DELETE; and the stack-only run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from larval import demo, demo_ladder


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
