"""``ADDRESS:PORT`` as the configuration writes where a TCP service listens (IPv6 in
brackets, ``[::1]:9105``): ``daemon.metrics``, `larval stack --metrics`."""

from __future__ import annotations

import ipaddress


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDRESS:PORT`` (IPv6 in brackets, ``[::1]:9105``) -> (address, port); ValueError
    naming what is wrong."""
    form = f"{text!r} is not ADDRESS:PORT (an IPv6 address in brackets)"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(form)
        port_text = rest[1:]
        if ipaddress.ip_address(_checked(host, text)).version != 6:
            raise ValueError(f"{text!r}: only an IPv6 address goes in brackets")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(form)
        if ":" in host:
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets, as "
                             f"[{host}]:{port_text}")  # fmt: skip
        _checked(host, text)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return host, int(port_text)


def _checked(host: str, text: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    return host


def show_listen(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
