"""The Prometheus endpoint (`larval.daemon.metrics`): two key managers in memory set up
IKE SAs and CHILD_SAs and carry traffic while the endpoint is scraped over HTTP; the
values move as the exchanges, the packets and the drops do, and the text parses as
Prometheus text. The endpoint binds, moves and stops; a port in use is a named error;
``ADDRESS:PORT`` is read as the configuration writes it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from larval.daemon.ike_daemon import IkeDaemon
from larval.daemon.listen_address import parse_listen, show_listen
from larval.daemon.metrics import (
    ConnectionTraffic,
    MetricsEndpoint,
    MetricsError,
    Sources,
    read_ike,
)
from tests.badinput import larval, write_private
from tests.keymgr.test_manager import Host, advance, carry, udp_packet
from tests.test_daemon_reload import config_text

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _status(host: Host) -> dict[str, Any]:
    """The part of `StackService._status` the collector reads, for a stack in memory."""
    stack = host.stack
    return {"sadb_counters": stack.sadb.counters.snapshot(), "drops": dict(stack.drops),
            "packets": host.path.counters(), "io": {},
            "acquire_records": stack.sadb.acquire_records, "policies": len(stack.spd.policies()),
            "pfkey_clients": 0, "pfkey_missed": 0}  # fmt: skip


def _sources(host: Host) -> Sources:
    traffic = ConnectionTraffic()
    host.keymgr.on_child_gone = lambda record: traffic.retire(record, host.stack.sadb)
    return Sources(lambda: _status(host), host.stack.sadb,
                   lambda: read_ike(host.keymgr, traffic, host.stack.sadb, None))  # fmt: skip


def _endpoint(host: Host) -> MetricsEndpoint:
    endpoint = MetricsEndpoint(_sources(host))
    endpoint.listen(("127.0.0.1", 0), "test")
    return endpoint


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    """GET /metrics over HTTP; every sample by name and labels (the text must parse)."""
    with urllib.request.urlopen(f"http://{show_listen((host, port))}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("larval_"), family.name
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def pair() -> Any:
    a, b = Host("a", "b", "trap", child_rekey="100s"), Host("b", "a", "none")
    endpoints = [_endpoint(a), _endpoint(b)]
    yield a, b, endpoints
    for endpoint in endpoints:
        endpoint.close()


def test_an_exchange_and_traffic_move_the_counters(pair: Any) -> None:
    a, b, (ea, eb) = pair
    assert ea.port is not None and eb.port is not None
    before = scrape(ea.port)
    assert value(before, "larval_ike_exchanges_total", version="2", exchange="IKE_SA_INIT",
                 result="ok") == 0  # fmt: skip
    assert value(before, "larval_sadb_sas", state="mature") == 0
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)  # held, ACQUIRE
    held = scrape(ea.port)
    assert value(held, "larval_acquires_total") == 1
    assert value(held, "larval_sadb_holds_total", on="acquire") == 1
    assert value(held, "larval_sadb_acquire_records") == 1
    assert value(held, "larval_sadb_sas", state="larval") == 0  # the initiator GETSPIs later
    carry(a, b, 0.0)
    for port in (ea.port, eb.port):
        up = scrape(port)
        for exchange in ("IKE_SA_INIT", "IKE_AUTH"):
            assert value(up, "larval_ike_exchanges_total", version="2", exchange=exchange,
                         result="ok") == 1  # fmt: skip
        assert value(up, "larval_ike_sas", state="established", version="2") == 1
        assert value(up, "larval_child_sas", connection="s2s") == 1
        assert value(up, "larval_sadb_sas", state="mature") == 2
        assert value(up, "larval_ike_retransmits_total") == 0
    # The held packet left on the new SA; B takes it, then a forged ESP packet.
    assert len(a.esp) == 1
    b.path.inbound(a.esp[0].payload, b.addr.packed, 0.0)
    b.path.inbound(b"\x7f\x00\x00\x01" + bytes(28), b.addr.packed, 0.0)
    sent, got = scrape(ea.port), scrape(eb.port)
    assert value(sent, "larval_connection_packets_total", connection="s2s", direction="out") == 1
    assert value(sent, "larval_connection_bytes_total", connection="s2s", direction="out") > 0
    assert value(sent, "larval_esp_sent_packets_total") == 1
    assert value(sent, "larval_sadb_released_packets_total", on="acquire") == 1
    assert value(got, "larval_connection_packets_total", connection="s2s", direction="in") == 1
    assert value(got, "larval_connection_bytes_total", connection="s2s", direction="in") == \
        value(sent, "larval_connection_bytes_total", connection="s2s", direction="out")  # fmt: skip
    assert value(got, "larval_delivered_packets_total") == 1
    assert value(got, "larval_dropped_packets_total", reason="unknown_spi") == 1
    assert value(before, "larval_dropped_packets_total", reason="unknown_spi") == 0


def test_a_connections_counts_keep_what_a_rekeyed_child_sa_carried(pair: Any) -> None:
    a, b, (ea, _) = pair
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    for _ in range(4):
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 1.0)
    out = value(scrape(ea.port), "larval_connection_packets_total", connection="s2s",
                direction="out")  # fmt: skip
    assert out == 5
    for _ in range(2):  # unseen by any scrape: the deletion keeps them (`on_child_gone`)
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 2.0)
    (old,) = a.keymgr.children
    a.stack.age(101.0)  # past the soft lifetime: EXPIRE, a rekey; the old CHILD_SA goes
    a.pump(101.0)
    carry(a, b, 101.0)
    assert old not in a.keymgr.children and len(a.keymgr.children) == 1
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 102.0)
    after = scrape(ea.port)
    assert value(after, "larval_connection_packets_total", connection="s2s",
                 direction="out") == 8  # fmt: skip
    assert value(after, "larval_ike_exchanges_total", version="2", exchange="CREATE_CHILD_SA",
                 result="ok") == 1  # fmt: skip


def test_unanswered_requests_count_retransmissions_and_a_timeout() -> None:
    a, b = Host("a", "b", "trap", retransmit_tries=2), Host("b", "a", "none")
    endpoint = _endpoint(a)
    try:
        assert endpoint.port is not None
        a.keymgr.start(0.0)
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
        a.pump(0.0)
        advance(a, b, 0.0, 100.0, drop=True)
        samples = scrape(endpoint.port)
        assert value(samples, "larval_ike_retransmits_total") == 2
        assert value(samples, "larval_ike_exchanges_total", version="2", exchange="IKE_SA_INIT",
                     result="timeout") == 1  # fmt: skip
        assert value(samples, "larval_ike_sas", state="established", version="2") == 0
    finally:
        endpoint.close()


@pytest.mark.parametrize("version", [2, 1])
def test_no_proposal_chosen_is_counted_at_both_ends(version: int) -> None:
    """An opener from an address no connection is for is refused statelessly."""
    a, b = Host("a", "b", "trap", version=version), Host("b", "a", "none", version=version)
    ea, eb = _endpoint(a), _endpoint(b)
    try:
        _refused_at_both_ends(a, b, ea, eb, version)
    finally:
        ea.close()
        eb.close()


def _refused_at_both_ends(
    a: Host, b: Host, ea: MetricsEndpoint, eb: MetricsEndpoint, version: int
) -> None:
    assert ea.port is not None and eb.port is not None
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    a.pump(0.0)
    ((init, _),) = a.keymgr.datagrams_to_send()
    b.keymgr.receive_ike(init, ("192.0.2.99", 500), b.addr, 0.0)  # not the configured peer
    ((refusal, _),) = b.keymgr.datagrams_to_send()
    a.keymgr.receive_ike(refusal, (str(b.addr), 500), a.addr, 0.0)
    refused, failed = scrape(eb.port), scrape(ea.port)
    assert value(refused, "larval_ike_no_proposal_chosen_total", direction="sent") == 1
    assert value(failed, "larval_ike_no_proposal_chosen_total", direction="received") == 1
    assert value(failed, "larval_ike_error_notifies_total", version=str(version),
                 direction="received", notify="NO_PROPOSAL_CHOSEN") == 1  # fmt: skip
    if version == 2:
        assert value(refused, "larval_ike_exchanges_total", version="2", exchange="IKE_SA_INIT",
                     result="refused") == 1  # fmt: skip
        assert value(failed, "larval_ike_exchanges_total", version="2", exchange="IKE_SA_INIT",
                     result="failed") == 1  # fmt: skip


def test_ikev1_exchanges_are_counted() -> None:
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    endpoints = [_endpoint(a), _endpoint(b)]
    try:
        a.keymgr.start(0.0)
        b.keymgr.start(0.0)
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
        carry(a, b, 0.0)
        a.keymgr.handle_timer(3.0)  # the outbound SA waits for QM3 to reach the peer
        carry(a, b, 3.0)
        for endpoint in endpoints:
            assert endpoint.port is not None
            samples = scrape(endpoint.port)
            for exchange in ("MAIN_MODE", "QUICK_MODE"):
                assert value(samples, "larval_ike_exchanges_total", version="1",
                             exchange=exchange, result="ok") == 1  # fmt: skip
            assert value(samples, "larval_ike_sas", state="established", version="1") == 1
            assert value(samples, "larval_child_sas", connection="s2s") == 1
    finally:
        for endpoint in endpoints:
            endpoint.close()


# -- the endpoint ------------------------------------------------------------------------


def test_the_endpoint_moves_and_stops(pair: Any) -> None:
    _, _, (endpoint, _) = pair
    first = endpoint.port
    assert first is not None and scrape(first)
    endpoint.listen(("::1", 0), "test")  # a reload that changes the address rebinds
    second = endpoint.port
    assert second is not None and scrape(second, "::1")
    with pytest.raises(urllib.error.URLError):
        scrape(first)
    endpoint.close()
    assert endpoint.port is None
    with pytest.raises(urllib.error.URLError):
        scrape(second, "::1")


def test_a_port_in_use_is_a_named_error_and_the_old_endpoint_stays(pair: Any) -> None:
    _, _, (endpoint, _) = pair
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsError) as info:
            endpoint.listen(("127.0.0.1", port), "f.toml: daemon.metrics")
    assert str(info.value) == (
        f"f.toml: daemon.metrics 127.0.0.1:{port}: cannot listen: Address already in use"
    )
    assert endpoint.port is not None and scrape(endpoint.port)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _taken(port: int) -> bool:
    """Whether something listens on `port` (connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_an_endpoint_bound_ahead_starts_no_thread_and_serves_that_socket_later() -> None:
    # `larval run --user`: bound as root, one thread only (the drop refuses more); served
    # once the daemon runs, on the socket bound then.
    endpoint = MetricsEndpoint(_sources(Host("a", "b", "none")))
    port = _free_port()
    threads = threading.active_count()
    endpoint.bind(("127.0.0.1", port), "f.toml: daemon.metrics")
    try:
        assert threading.active_count() == threads
        assert _taken(port) and endpoint.port is None
        endpoint.listen(("127.0.0.1", port), "f.toml: daemon.metrics")
        assert endpoint.port == port and endpoint.address == ("127.0.0.1", port)
        assert ("larval_spd_policies", frozenset()) in scrape(port)
    finally:
        endpoint.close()
    assert not _taken(port)


def test_an_endpoint_bound_ahead_then_moved_or_closed_lets_its_port_go() -> None:
    endpoint = MetricsEndpoint(_sources(Host("a", "b", "none")))
    first = _free_port()
    endpoint.bind(("127.0.0.1", first), "test")
    endpoint.close()  # the start failed before it was served
    assert not _taken(first)
    endpoint.bind(("127.0.0.1", first), "test")
    try:
        endpoint.listen(("127.0.0.1", 0), "test")  # another address than the one bound
        assert not _taken(first)
        assert endpoint.port is not None and endpoint.port != first and scrape(endpoint.port)
    finally:
        endpoint.close()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("127.0.0.1:9105", ("127.0.0.1", 9105)), ("[::1]:9105", ("::1", 9105)),
     ("0.0.0.0:1", ("0.0.0.0", 1)), ("[2001:db8::1]:65535", ("2001:db8::1", 65535))],
)  # fmt: skip
def test_an_address_and_port(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed
    assert show_listen(parsed) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [("9105", "is not ADDRESS:PORT"), ("127.0.0.1", "is not ADDRESS:PORT"),
     (":9105", "is not ADDRESS:PORT"), ("[::1]", "is not ADDRESS:PORT"),
     ("::1:9105", "goes in brackets, as [::1]:9105"), ("[127.0.0.1]:9105", "only an IPv6"),
     ("host.example:9105", "'host.example' is not an IP address"),
     ("127.0.0.1:0", "the port must be 1-65535"), ("127.0.0.1:http", "the port must be")],
)  # fmt: skip
def test_a_bad_address_and_port_says_why(text: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_listen(text)
    assert why in str(info.value)


# -- larval run and larval stack -----------------------------------------------------------


@pytest.mark.parametrize(
    "user",
    [[], pytest.param(["--user", "nobody"], marks=pytest.mark.skipif(
        os.geteuid() != 0, reason="--user needs root"))],
    ids=["root", "user"],
)  # fmt: skip
def test_larval_run_with_its_port_in_use_says_so(tmp_path: Path, user: list[str]) -> None:
    """The endpoint binds first: a port taken stops the start with one line, no
    traceback, before IKE or PF_KEY open anything; with ``--user``, before the drop."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = config_text(tmp_path).replace(
            "[daemon]\n", f'[daemon]\nmetrics = "127.0.0.1:{port}"\n', 1
        )
        path = write_private(tmp_path / "larval.toml", text)
        result = larval("run", "-c", str(path), *user)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"larval: {path}: daemon.metrics 127.0.0.1:{port}: cannot listen: Address already in use"
    )
    assert not (tmp_path / "control").exists() and not (tmp_path / "pfkey").exists()


def test_larval_stack_refuses_a_bad_metrics_address(tmp_path: Path) -> None:
    result = larval("stack", "--pfkey-socket", str(tmp_path / "pfkey"), "--control-socket", "",
                    "--metrics", "localhost:9105")  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--metrics 'localhost:9105': 'localhost' is not an IP address" in result.stderr
    assert not (tmp_path / "pfkey").exists()


def test_a_reload_moves_turns_off_and_keeps_the_endpoint(tmp_path: Path) -> None:
    """SIGHUP with another ``daemon.metrics`` rebinds; without one, the endpoint goes; a
    port in use keeps the one that runs."""
    path = write_private(tmp_path / "larval.toml", config_text(tmp_path))
    daemon = IkeDaemon(str(path))

    def configured(address: str | None) -> None:
        line = f'metrics = "{address}"\n' if address else ""
        path.write_text(config_text(tmp_path).replace("[daemon]\n", f"[daemon]\n{line}", 1))
        daemon.reload()

    async def scenario() -> None:
        daemon._loop = asyncio.get_running_loop()
        assert daemon.metrics is None  # off by default
        with socket.socket() as one, socket.socket() as two:
            one.bind(("127.0.0.1", 0))
            two.bind(("127.0.0.1", 0))
            first, second = one.getsockname()[1], two.getsockname()[1]
        configured(f"127.0.0.1:{first}")
        assert daemon.metrics is not None and daemon.metrics.port == first
        samples = await asyncio.to_thread(scrape, first)
        assert value(samples, "larval_spd_policies") == len(daemon.stack.spd.policies()) > 0
        assert value(samples, "larval_ike_sas", state="established", version="2") == 0
        configured(f"127.0.0.1:{second}")
        assert daemon.metrics.port == second
        assert await asyncio.to_thread(scrape, second)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            configured(f"127.0.0.1:{taken.getsockname()[1]}")
        assert daemon.metrics.port == second  # kept where it was
        configured(None)
        assert daemon.metrics is None
        with pytest.raises(urllib.error.URLError):
            await asyncio.to_thread(scrape, second)

    try:
        asyncio.run(scenario())
    finally:
        if daemon.metrics is not None:
            daemon.metrics.close()


def test_larval_stack_serves_the_stacks_own(tmp_path: Path) -> None:
    """`larval stack --metrics`: the stack's counters, no key manager's; gone at SIGTERM."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "larval", "stack", "--pfkey-socket", str(tmp_path / "pfkey"),
         "--control-socket", str(tmp_path / "control"), "--metrics", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                samples = scrape(port)
                break
            except urllib.error.URLError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert value(samples, "larval_sadb_sas", state="larval") == 0
        assert ("larval_sadb_held_packets", frozenset()) in samples
        assert not any(name.startswith("larval_ike_") for name, _ in samples)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in out, out
    with pytest.raises(urllib.error.URLError):
        scrape(port)
