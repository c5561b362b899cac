"""End to end, as root: two network namespaces joined by a veth pair, `larval stack` with a
TUN device in each, keyed by hand with `larval sa add`, ping both ways through ESP in UDP."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from larval.net.control import control_request
from larval.net.netns import Netns, veth_pair

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None,
    reason="needs root, /dev/net/tun and iproute2 (network namespaces)",
)

OUTER = {"a": "192.0.2.1", "b": "192.0.2.2"}
INNER = {"a": "198.51.100.1", "b": "203.0.113.1"}
NET = {"a": "198.51.100.0/24", "b": "203.0.113.0/24"}
KEYS = {
    "ab": "000102030405060708090a0b0c0d0e0f10111213",
    "ba": "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00010203",
}
SPI = {"ab": "0x1001", "ba": "0x2002"}


def policy(me: str, peer: str) -> str:
    return f"""
[policies.site]
local_ts = ["{NET[me]}"]
remote_ts = ["{NET[peer]}"]
mode = "tunnel"
local_addrs = ["{OUTER[me]}"]
remote_addrs = ["{OUTER[peer]}"]
esp_proposals = ["aes128gcm16"]
"""


class Site:
    def __init__(self, name: str, ns: Netns, tmp: Path) -> None:
        self.name, self.ns = name, ns
        self.pfkey = str(tmp / f"{name}.pfkey")
        self.control = str(tmp / f"{name}.control")
        self.policy = tmp / f"{name}.toml"

    def larval(self, *args: str) -> str:
        return self.ns.run([sys.executable, "-m", "larval", *args])


@pytest.fixture(params=["udp"])
def sites(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Site, Site]]:
    plain = ["--plain-esp"] if request.param == "plain" else []
    tag = uuid.uuid4().hex[:6]
    with ExitStack() as stack:
        ns_a = stack.enter_context(Netns(f"lvA{tag}"))
        ns_b = stack.enter_context(Netns(f"lvB{tag}"))
        veth_pair(ns_a, ns_b, f"{OUTER['a']}/24", f"{OUTER['b']}/24")
        a, b = Site("a", ns_a, tmp_path), Site("b", ns_b, tmp_path)
        for me, peer, site in (("a", "b", a), ("b", "a", b)):
            site.policy.write_text(policy(me, peer))
            log = open(tmp_path / f"{me}.log", "wb")  # noqa: SIM115 - closed with the stack
            stack.callback(log.close)
            site.ns.popen(
                [sys.executable, "-m", "larval", "stack", "--pfkey-socket", site.pfkey,
                 "--control-socket", site.control, "--policy", str(site.policy),
                 "--tun", "larval0", "--local", OUTER[me],
                 "--tun-address", f"{INNER[me]}/24", "--route", NET[peer], *plain],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not all(os.path.exists(s.control) for s in (a, b)):
            if time.monotonic() > deadline:
                logs = {n: (tmp_path / f"{n}.log").read_text() for n in "ab"}
                pytest.fail(f"larval stack did not start: {logs}")
            time.sleep(0.1)
        yield a, b


def key(site: Site, direction: str, src: str, dst: str) -> None:
    site.larval("sa", "add", "--socket", site.pfkey, "--spi", SPI[direction],
                "--src", OUTER[src], "--dst", OUTER[dst], "--alg", "aes128gcm16",
                "--encrypt-key", KEYS[direction])  # fmt: skip


def ping(site: Site, dst: str, count: int = 5) -> str:
    return site.ns.run(
        ["ping", "-c", str(count), "-i", "0.2", "-W", "2", "-I", INNER[site.name], dst],
        check=False,
        timeout=30,
    )


@pytest.mark.skipif(shutil.which("ping") is None, reason="needs ping (iputils-ping)")
@pytest.mark.parametrize("sites", ["udp", "plain"], indirect=True)
def test_ping_both_ways_through_manually_keyed_esp(sites: tuple[Site, Site]) -> None:
    a, b = sites
    for site in (a, b):
        key(site, "ab", "a", "b")
        key(site, "ba", "b", "a")
    for site, peer in ((a, b), (b, a)):
        out = ping(site, INNER[peer.name])
        assert re.search(r" 0% packet loss", out), out
    # The packets really went through the stacks: ESP counted on both sides.
    import json

    status = json.loads(
        a.larval("sa", "get", "--socket", a.pfkey, "--spi", SPI["ab"], "--dst", OUTER["b"],
                 "--json")
    )  # fmt: skip
    assert status["current"]["bytes"] > 0
    answer = control_request(a.control, {"op": "status"})["io"]
    plain = "esp_packets_sent" in answer
    assert (answer.get("esp_packets_sent", 0) > 0) if plain else answer["udp_datagrams_sent"] > 0


@pytest.mark.skipif(shutil.which("ping") is None, reason="needs ping (iputils-ping)")
def test_without_sas_the_first_packet_waits_on_an_acquire(sites: tuple[Site, Site]) -> None:
    a, b = sites
    key(b, "ab", "a", "b")
    key(b, "ba", "b", "a")
    key(a, "ba", "b", "a")
    # A has no outbound SA: its first ping waits on an acquire record ...
    pinger = a.ns.popen(
        ["ping", "-c", "1", "-W", "5", "-I", INNER["a"], INNER["b"]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(1.0)
    # ... and leaves as soon as the SA is added, as a key manager would after IKE.
    key(a, "ab", "a", "b")
    out, _ = pinger.communicate(timeout=10)
    assert b" 0% packet loss" in out, out
