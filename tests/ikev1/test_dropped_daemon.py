"""`larval status` of a running daemon names the malformed IKEv1 messages it dropped:
real `larval run` on loopback addresses of its own, garbage sent to its UDP 500 from a
real socket, the counts read back through the control socket (text and ``--json``)."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

from tests.badinput.test_daemon import config_text, larval_run, loopback_pair


def _header(cookie_i: bytes, exchange: int, length: int) -> bytes:
    return cookie_i + bytes(8) + bytes((1, 0x10, exchange, 0)) + struct.pack("!II", 0, length)


def test_status_counts_malformed_ikev1_messages_by_name(tmp_path: Path) -> None:
    me, peer = loopback_pair()
    text = config_text(tmp_path, me, peer, "10.1.0.0/16", "10.2.0.0/16")
    text = text.replace("version = 2", "version = 1").replace('"aes128gcm16"', '"aes128-sha256"')
    body = bytes((0, 0)) + struct.pack("!H", 200) + bytes(8)  # an SA payload that lies
    garbage = [
        _header(bytes.fromhex("1112131415161718"), 2, 10),  # Length shorter than HDR
        _header(bytes.fromhex("2122232425262728"), 2, 28 + len(body)) + body,
    ]
    with larval_run(tmp_path, me, peer, "", "", text=text) as daemon:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((peer, 0))
            for datagram in garbage:
                sock.sendto(datagram, (me, 500))
        deadline = time.monotonic() + 10
        while True:
            as_json = daemon.cli("status", "--json")
            assert as_json.returncode == 0, as_json.stderr
            dropped = json.loads(as_json.stdout)["ikev1_dropped"]
            if sum(dropped.values()) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert dropped == {"invalid_header": 1, "payload_malformed": 1}, daemon.log_text()
        shown = daemon.cli("status")
        assert shown.returncode == 0 and shown.stderr == ""
        assert "IKEv1 messages dropped: invalid_header 1, payload_malformed 1\n" in shown.stdout
