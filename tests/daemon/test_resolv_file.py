"""``daemon.resolv_file``: the DNS servers and domains a road warrior receives, written in
resolv.conf's words ahead of what the file held, replaced atomically, and the file put
back as it was when they go (`larval.daemon.road_warrior`)."""

from __future__ import annotations

import ipaddress
import logging
import stat
from pathlib import Path

import pytest

from larval.daemon.road_warrior import ResolvFile, RoadWarrior, resolv_text
from larval.keymgr.road_warrior import HostState

VIP = ipaddress.ip_address("10.3.0.1")
STATE = HostState(
    addresses=(VIP,),
    routes=((ipaddress.ip_network("203.0.113.0/24"), VIP),),
    dns=(ipaddress.ip_address("10.3.0.53"), ipaddress.ip_address("2001:db8::53")),
    domains=("home.example", "example.org"),
    connections=("home",),
)


def test_the_text_is_resolv_conf() -> None:
    assert resolv_text(STATE) == (
        "# written by larval: the DNS servers of the IKE SA(s) of home\n"
        "nameserver 10.3.0.53\n"
        "nameserver 2001:db8::53\n"
        "search home.example example.org\n"
    )
    assert resolv_text(HostState(addresses=(VIP,))) == ""


def test_written_ahead_of_the_original_and_put_back(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.53\n")
    resolv = ResolvFile(str(path))
    resolv.write(resolv_text(STATE))
    assert path.read_text() == resolv_text(STATE) + "nameserver 192.0.2.53\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    # A second IKE SA's servers replace the first's, not pile on them.
    other = HostState(dns=(ipaddress.ip_address("10.9.0.53"),), connections=("work",))
    resolv.write(resolv_text(other))
    assert path.read_text() == resolv_text(other) + "nameserver 192.0.2.53\n"
    resolv.write("")
    assert path.read_text() == "nameserver 192.0.2.53\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resolv.conf"]  # no temporary left


def test_a_file_that_was_not_there_goes_again(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    resolv = ResolvFile(str(path))
    resolv.write("")
    assert not path.exists()  # nothing received, nothing written
    resolv.write(resolv_text(STATE))
    assert path.read_text() == resolv_text(STATE)
    resolv.write("")
    assert not path.exists()


def test_the_road_warrior_writes_and_restores_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("search lan\n")
    host = RoadWarrior(None, str(path))  # no TUN: only the file
    with caplog.at_level(logging.INFO, logger="larval.daemon"):
        host.sync(STATE)
        assert path.read_text() == resolv_text(STATE) + "search lan\n"
        host.sync(STATE)  # unchanged: nothing written again
        host.close()
    assert path.read_text() == "search lan\n"
    assert host.state == HostState()
    assert "installing virtual IP 10.3.0.1 (no TUN device: not on an interface)" in caplog.text
    assert f"DNS servers 10.3.0.53, 2001:db8::53 written to {path}" in caplog.text
    assert "removing virtual IP 10.3.0.1" in caplog.text


def test_a_file_that_cannot_be_written_is_one_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-directory" / "resolv.conf"
    host = RoadWarrior(None, str(path))
    with caplog.at_level(logging.ERROR, logger="larval.daemon"):
        host.sync(STATE)
        host.close()
    assert f"daemon.resolv_file {path}: No such file or directory" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_netlink_failure_is_one_error_line(caplog: pytest.LogCaptureFixture) -> None:
    host = RoadWarrior("rw-test0", None)

    def broken(*_: object) -> None:
        raise ValueError("the kernel said something unexpected")

    host._installer.apply = broken  # type: ignore[union-attr, method-assign]
    with caplog.at_level(logging.ERROR, logger="larval.daemon"):
        host.sync(STATE)
        host.close()  # waits for the netlink thread
    assert "virtual IP on rw-test0: the kernel said something unexpected" in caplog.text
    assert "Traceback" not in caplog.text
