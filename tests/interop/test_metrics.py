"""The metrics endpoint of a real `larval run`: two larval daemons in namespaces, A with
``daemon.metrics``, B without. A is scraped over HTTP (urllib, from inside its namespace)
before and after a ping brings the tunnel up through a trap: the IKE SA, the exchanges
and the connection's bytes and packets move, and so does a drop counter after a forged
ESP packet. Nothing listens in B (off by default), and a reload moves A's endpoint."""

from __future__ import annotations

import signal
import sys
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from larval.net.netns import call_in
from tests.interop.harness import OUTER, LarvalDaemon, Site, Topology, larval_config, needs_netns

pytestmark = [needs_netns]

PORT = 9105  # the namespace's own loopback: no other test's port to meet
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        return str(answer.read().decode())


def scrape(site: Site, port: int = PORT) -> Samples:
    """GET /metrics from inside the site's namespace; every sample by name and labels."""
    text = call_in(site.ns, _get, f"http://127.0.0.1:{port}/metrics")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _forge_esp(site: Site, to: str) -> None:
    """One ESP-in-UDP datagram with an SPI nobody has, from `site` to `to`:4500."""
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.sendto(b'\\x7f\\x00\\x00\\x01' + bytes(40), (sys.argv[1], 4500))\n")  # fmt: skip
    site.ns.run([sys.executable, "-c", code, to])


def _until(check: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.2)


def test_a_real_exchange_moves_the_metrics(tmp_path: object) -> None:
    with Topology(tmp_path) as topo:  # type: ignore[arg-type]
        text = larval_config(topo.a, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                             start_action="trap")  # fmt: skip
        text = text.replace("[daemon]\n", f'[daemon]\nmetrics = "127.0.0.1:{PORT}"\n', 1)
        a = LarvalDaemon(topo.a, text)
        topo.daemons.append(a)
        a.start()
        topo.larval(topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                    start_action="none")  # fmt: skip
        before = scrape(topo.a)
        assert value(before, "larval_ike_sas", state="established", version="2") == 0
        assert value(before, "larval_child_sas", connection="s2s") == 0
        assert value(before, "larval_ike_exchanges_total", version="2", exchange="IKE_AUTH",
                     result="ok") == 0  # fmt: skip
        result = topo.a.ping(count=3)
        assert " 0% packet loss" in result.stdout, (result.stdout, a.log.read_text()[-3000:])
        a.wait_for("child")
        after = scrape(topo.a)
        assert value(after, "larval_ike_sas", state="established", version="2") == 1
        assert value(after, "larval_child_sas", connection="s2s") == 1
        for exchange in ("IKE_SA_INIT", "IKE_AUTH"):
            assert value(after, "larval_ike_exchanges_total", version="2", exchange=exchange,
                         result="ok") == 1  # fmt: skip
        assert value(after, "larval_acquires_total") == 1
        assert value(after, "larval_sadb_sas", state="mature") == 2
        for direction in ("in", "out"):
            assert value(after, "larval_connection_packets_total", connection="s2s",
                         direction=direction) >= 3  # fmt: skip
            assert (
                value(after, "larval_connection_bytes_total", connection="s2s", direction=direction)
                >= 3 * 84
            )  # three echo packets of 84 bytes
        assert value(after, "larval_esp_sent_packets_total") >= 3
        # A forged ESP packet is dropped, and counted by name.
        dropped = value(after, "larval_dropped_packets_total", reason="unknown_spi")
        _forge_esp(topo.b, OUTER["a"])
        _until(lambda: value(scrape(topo.a), "larval_dropped_packets_total",
                             reason="unknown_spi") == dropped + 1)  # fmt: skip
        # Off by default: nothing listens on TCP in B's namespace.
        assert topo.b.ns.run(["ss", "-Hltn"]).strip() == ""
        # A reload with another port moves the endpoint.
        assert a.proc is not None
        a.config.write_text(text.replace(f":{PORT}", f":{PORT + 1}"))
        a.proc.send_signal(signal.SIGHUP)
        _until(lambda: answers(topo.a, PORT + 1))
        assert not answers(topo.a, PORT)
        moved = scrape(topo.a, PORT + 1)
        assert value(moved, "larval_ike_sas", state="established", version="2") == 1


def answers(site: Site, port: int) -> bool:
    try:
        scrape(site, port)
    except urllib.error.URLError:
        return False
    return True
