"""`larval.ike.sa.IkeSa`: both sessions satisfy it (as mypy sees them), each state of
either version has its `Phase`, and each session reads as the protocol says."""

from __future__ import annotations

import inspect
import ipaddress
import itertools
import os
import textwrap
import warnings
from pathlib import Path
from types import ModuleType

import pytest
from mypy import api as mypy_api

import larval
from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.ike.config import ChildConfig, IkeConfig
from larval.ike.identity import identity
from larval.ike.sa import IkeSa, Phase
from larval.ikev1 import session as v1
from larval.ikev2 import session as v2

warnings.filterwarnings("ignore", category=DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
NET_A, NET_B = ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24")


def _mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    """mypy --strict on `source`, with this larval (not an installed one) on its path."""
    path = tmp_path / "check.py"
    path.write_text(textwrap.dedent(source))
    env_path = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = str(Path(larval.__file__).parent.parent)
    try:
        out, err, status = mypy_api.run(
            ["--strict", "--cache-dir", str(tmp_path / "cache"), str(path)]
        )
    finally:
        if env_path is None:
            del os.environ["MYPYPATH"]
        else:
            os.environ["MYPYPATH"] = env_path
    return out + err, status


def test_mypy_finds_both_sessions_are_ike_sas_and_a_partial_one_is_not(tmp_path: Path) -> None:
    out, status = _mypy(
        tmp_path,
        """
        from larval.ike.config import IkeConfig
        from larval.ike.sa import IkeSa
        from larval.ike.state import IkeSaState
        from larval.ikev1.session import IkeV1Session
        from larval.ikev2.session import IkeSession


        def both(v2: IkeSession, v1: IkeV1Session) -> list[IkeSa]:
            return [v2, v1]


        class NoRekey(IkeSession):
            def rekey_child(self, spi_in: int) -> bool:  # type: ignore[override]
                return False


        def partial(session: NoRekey) -> IkeSa:
            return session


        def again(sa: IkeSa, config: IkeConfig) -> IkeSa:
            return type(sa).restore(sa.snapshot(), config, allocate_spi=lambda: 0x1000)


        class NoValue(IkeSession):
            def snapshot(self) -> str:  # type: ignore[override]
                return ""


        def valueless(session: NoValue) -> IkeSa:
            return session


        class OldRestore(IkeV1Session):
            @classmethod
            def restore(  # type: ignore[override]
                cls, value: IkeSaState, config: IkeConfig
            ) -> OldRestore:
                raise NotImplementedError


        def unrestorable(session: OldRestore) -> IkeSa:
            return session
        """,
    )
    # Only the classes with a member unlike the protocol's are refused, each for it: a
    # rekey_child without `now`, a snapshot that is no IkeSaState, a restore that takes
    # no callbacks.
    assert status == 1, out
    for cls, member in (("NoRekey", "rekey_child"), ("NoValue", "snapshot"),
                        ("OldRestore", "restore")):  # fmt: skip
        assert f'Incompatible return value type (got "{cls}", expected "IkeSa")' in out, out
        assert member in out
    assert out.count("error:") == 3, out


@pytest.mark.parametrize("module", [v1, v2], ids=["ikev1", "ikev2"])
def test_every_state_has_a_phase(module: ModuleType) -> None:
    phases, state = module._PHASES, module.State
    assert set(phases) == set(state)
    assert phases[state.IDLE] is Phase.IDLE
    assert phases[state.ESTABLISHED] is Phase.ESTABLISHED
    assert phases[state.CLOSED] is Phase.CLOSED


@pytest.mark.parametrize("cls", [v1.IkeV1Session, v2.IkeSession])
def test_each_protocol_member_is_there_with_its_parameters(cls: type) -> None:
    """What mypy checks statically, at run time too: every member of the protocol, and
    each method's parameters by name (the key manager calls some by keyword)."""
    members = [name for name in vars(IkeSa) if not name.startswith("_")]
    assert len(members) >= 22 and {"snapshot", "restore"} <= set(members)
    for name in members:
        # A classmethod (`restore`) by its function, `cls` and all.
        ours = getattr(getattr(IkeSa, name), "__func__", getattr(IkeSa, name))
        if not inspect.isfunction(ours):
            continue
        theirs = getattr(getattr(cls, name), "__func__", getattr(cls, name))
        expected = list(inspect.signature(ours).parameters)
        assert list(inspect.signature(theirs).parameters)[: len(expected)] == expected, name


def _config(local: ipaddress.IPv4Address, remote: ipaddress.IPv4Address, ike: str) -> IkeConfig:
    return IkeConfig(
        "s2s", local, remote, identity(str(local)), identity(str(remote)),
        b"a-test-psk-0123456789", (parse_ike_proposal(ike),),
    )  # fmt: skip


def _child(local: ipaddress.IPv4Network, remote: ipaddress.IPv4Network) -> ChildConfig:
    return ChildConfig("net", (esp_proposal_transforms("aes128-sha256"),), (local,), (remote,))


@pytest.mark.parametrize("version", [1, 2])
def test_a_pair_of_sessions_read_through_the_protocol(version: int) -> None:
    """Main Mode + Quick Mode, or IKE_SA_INIT + IKE_AUTH, watched only through `IkeSa`."""
    spis = itertools.count(0x1000)
    ike = "aes128-sha256-modp2048" if version == 1 else "aes128-sha256-x25519"
    cls: type = v1.IkeV1Session if version == 1 else v2.IkeSession
    child_r = _child(NET_B, NET_A)
    i: IkeSa = cls(_config(A, B, ike), initiator=True, allocate_spi=lambda: next(spis))
    r: IkeSa = cls(_config(B, A, ike), initiator=False, allocate_spi=lambda: next(spis),
                   child_policy=lambda tsi, tsr: child_r)  # fmt: skip
    assert (i.version, r.version) == (version, version)
    assert i.phase is r.phase is Phase.IDLE and i.suite == r.suite == ()
    i.initiate(_child(NET_A, NET_B), 0.0)
    assert i.phase is Phase.CONNECTING and i.initiator and not r.initiator
    for _ in range(10):
        moved = 0
        for src, dst, addr in ((i, r, (str(A), 500)), (r, i, (str(B), 500))):
            for data, _ in src.datagrams_to_send(0.0):
                dst.receive_datagram(data, addr, 0.0)
                moved += 1
        if not moved:
            break
    assert i.phase is r.phase is Phase.ESTABLISHED
    assert i.spi_i == r.spi_i and i.spi_r == r.spi_r and len(i.spi_r) == 8
    assert i.suite == r.suite == parse_ike_proposal(ike)
    assert i.remote == (str(B), 500) and not i.natted
    (spi_in,) = i.children
    assert len(r.children) == 1 and i.state.value == "established"
    assert i.rekey_child(spi_in, 1.0)  # CREATE_CHILD_SA, or a new Quick Mode
    assert not i.rekey_child(spi_in, 1.0)  # under way (IKEv2), renewed already (IKEv1)
    assert not i.rekey_child(0xDEAD, 1.0)  # no such CHILD_SA
    i.delete(2.0)
    assert i.phase in (Phase.DELETING, Phase.CLOSED)
