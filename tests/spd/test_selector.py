"""Selectors: matching packets (IPv4, IPv6, protocol, ports, ICMP type) and the TS syntax."""

from __future__ import annotations

import ipaddress

import pytest

from larval.spd import ANY_PORTS, Selector, SpdError, TsSpec, parse_ts

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58


def test_prefixes_v4() -> None:
    sel = Selector.of("10.0.0.0/8", "192.0.2.0/24")
    assert sel.matches("10.1.2.3", "192.0.2.9")
    assert sel.matches(b"\x0a\x00\x00\x01", b"\xc0\x00\x02\xff", TCP, 1, 2)
    assert not sel.matches("11.0.0.1", "192.0.2.9")
    assert not sel.matches("10.0.0.1", "192.0.3.1")
    # Local and remote are not interchangeable.
    assert not sel.matches("192.0.2.9", "10.1.2.3")


def test_prefixes_v6_and_family_mismatch() -> None:
    sel = Selector.of("2001:db8:1::/48", "2001:db8:2::/48")
    assert sel.matches("2001:db8:1::5", "2001:db8:2:ffff::1")
    assert not sel.matches("2001:db8:3::5", "2001:db8:2::1")
    assert not sel.matches("10.0.0.1", "10.0.0.2")
    with pytest.raises(SpdError, match="mixes IPv4 and IPv6"):
        Selector.of("10.0.0.0/8", "::/0")


def test_protocol_and_ports() -> None:
    sel = Selector.of("10.0.0.0/8", "0.0.0.0/0", TCP, 0, (80, 81))
    assert sel.matches("10.0.0.1", "1.2.3.4", TCP, 40000, 80)
    assert sel.matches("10.0.0.1", "1.2.3.4", TCP, 40000, 81)
    assert not sel.matches("10.0.0.1", "1.2.3.4", TCP, 40000, 82)
    assert not sel.matches("10.0.0.1", "1.2.3.4", UDP, 40000, 80)
    assert not sel.matches("10.0.0.1", "1.2.3.4", TCP, 80, 40000)
    anyproto = Selector.of("10.0.0.0/8", "0.0.0.0/0")
    assert anyproto.matches("10.0.0.1", "1.2.3.4", 47, 0, 0)


def test_icmp_type() -> None:
    echo = Selector.of("::/0", "::/0", ICMPV6, icmp_type=128)
    assert echo.matches("::1", "::2", ICMPV6, icmp_type=128)
    assert not echo.matches("::1", "::2", ICMPV6, icmp_type=129)
    assert not echo.matches("::1", "::2", ICMPV6)
    any_icmp = Selector.of("0.0.0.0/0", "0.0.0.0/0", ICMP)
    assert any_icmp.matches("1.1.1.1", "2.2.2.2", ICMP, icmp_type=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"local_ports": 80}, "ports need a protocol that has ports"),
        ({"proto": ICMP, "local_ports": 80}, "ports need a protocol that has ports"),
        ({"proto": TCP, "icmp_type": 8}, "an ICMP type needs protocol icmp or ipv6-icmp"),
        ({"proto": ICMP, "icmp_type": 256}, "ICMP type 256 is not within 0-255"),
        ({"proto": TCP, "local_ports": (90, 80)}, "local ports 90-80 is not a port range"),
        ({"proto": 256}, "protocol 256 is not within 0-255"),
    ],
)
def test_invalid_selectors(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpdError, match=message):
        Selector.of("10.0.0.0/8", "10.0.0.0/8", **kwargs)


def test_specificity_and_mirror() -> None:
    sel = Selector.of("10.0.0.0/8", "192.0.2.0/24", TCP, 0, 443)
    assert sel.specificity() == (32, 1, 1, 0)
    back = sel.mirrored()
    assert back.local == sel.remote and back.remote_ports == ANY_PORTS
    assert back.local_ports == (443, 443)
    assert str(sel) == "10.0.0.0/8[tcp] === 192.0.2.0/24[tcp/443]"


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("10.0.0.0/8", TsSpec(ipaddress.ip_network("10.0.0.0/8"))),
        ("192.0.2.1", TsSpec(ipaddress.ip_network("192.0.2.1/32"))),
        ("10.0.0.0/8[tcp/80]", TsSpec(ipaddress.ip_network("10.0.0.0/8"), TCP, (80, 80))),
        ("10.0.0.0/8[tcp]", TsSpec(ipaddress.ip_network("10.0.0.0/8"), TCP)),
        ("10.0.0.0/8[udp/%any]", TsSpec(ipaddress.ip_network("10.0.0.0/8"), UDP)),
        ("[udp/1000-2000]", TsSpec(None, UDP, (1000, 2000))),
        ("::/0[ipv6-icmp/128]", TsSpec(ipaddress.ip_network("::/0"), ICMPV6, icmp_type=128)),
        ("0.0.0.0/0[icmp/8]", TsSpec(ipaddress.ip_network("0.0.0.0/0"), ICMP, icmp_type=8)),
        ("%any", TsSpec(ipaddress.ip_network("0.0.0.0/0"))),
        ("%any6[47]", TsSpec(ipaddress.ip_network("::/0"), 47)),
        ("dynamic", TsSpec(None)),
    ],
)
def test_parse_ts(text: str, spec: TsSpec) -> None:
    assert parse_ts(text) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1/8", "'10.0.0.1/8' is not an address or prefix"),
        ("10.0.0.0/8[tcpp/80]", "protocol 'tcpp' is not a number 0-255 or one of icmp, tcp"),
        ("10.0.0.0/8[tcp/http]", "port 'http' is not a number or a range low-high"),
        ("10.0.0.0/8[tcp/70000]", "port '70000' is not within 0-65535"),
        ("10.0.0.0/8[tcp/90-80]", "port '90-80' is not within 0-65535, low before high"),
        ("10.0.0.0/8[%any/80]", "port '80' needs a protocol"),
        ("10.0.0.0/8[icmp/echo]", "ICMP type 'echo' is not a number 0-255"),
    ],
)
def test_parse_ts_bad(text: str, message: str) -> None:
    with pytest.raises(SpdError, match=message.replace("[", r"\[")):
        parse_ts(text)


def test_ts_text_round_trip() -> None:
    for text in ["10.0.0.0/8[tcp/80]", "10.0.0.0/8[udp/1000-2000]", "::/0[ipv6-icmp/135]"]:
        spec = parse_ts(text)
        assert spec.network is not None
        sel = Selector(spec.network, spec.network, spec.proto, spec.ports, icmp_type=spec.icmp_type)
        assert sel.local_ts() == text
