"""Hypothesis walks the SA state machine: every operation in every state either moves the SA
to the state the model says or is refused with the errno and diagnostic the model says."""

from __future__ import annotations

import errno

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from larval.pfkey import (
    Diagnostic,
    ExtType,
    PfkeyMessage,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SaState,
    SaType,
)
from larval.pfkey.requests import address_pair, by_spi
from larval.sadb import HoldResult, Sadb
from larval.sadb.sa import REFUSALS, TRANSITIONS
from tests.sadb.support import LOCAL, LOCAL_B, PEER, Released, larval_spi, recording_sadb, update

SOFT, HARD, LARVAL_LIFE = 100, 200, 90
LIFETIMES = (
    SadbLifetime(ExtType.LIFETIME_SOFT, addtime=SOFT),
    SadbLifetime(ExtType.LIFETIME_HARD, addtime=HARD),
)
GONE = None  # DEAD SAs are reaped: the model forgets them


class SaMachine(RuleBasedStateMachine):
    spis = Bundle("spis")

    @initialize()
    def start(self) -> None:
        self.released = Released()
        self.sadb = recording_sadb(self.released)
        self.now = 0.0
        self.state: dict[int, int | None] = {}  # spi -> model state
        self.added: dict[int, float] = {}

    def _reply(self, msg: PfkeyMessage) -> PfkeyMessage:
        replies = self.sadb.handle(msg, self.now)
        assert len(replies) == 1
        return replies[0].message

    def _expect(self, reply: PfkeyMessage, err: int, diag: int = 0) -> None:
        assert (reply.errno, reply.diagnostic) == (err, diag), reply

    @rule(target=spis)
    def getspi(self) -> int:
        spi = larval_spi(self.sadb, self.now)
        self.state[spi], self.added[spi] = SaState.LARVAL, self.now
        return spi

    @rule(spi=spis)
    def update_with_keys(self, spi: int) -> None:
        reply = self._reply(update(spi, soft=LIFETIMES[0], hard=LIFETIMES[1]))
        state = self.state[spi]
        if state is GONE:
            self._expect(reply, errno.ESRCH, Diagnostic.SA_NOTFOUND)
        elif state == SaState.LARVAL:
            self._expect(reply, 0)
            self.state[spi] = SaState.MATURE
        else:
            self._expect(reply, errno.EINVAL, Diagnostic.EKEY_PRESENT)

    @rule(spi=spis)
    def update_lifetimes(self, spi: int) -> None:
        msg = PfkeyMessage(
            SadbMsgType.UPDATE,
            SaType.ESP,
            extensions=(SadbSa(spi, state=SaState.MATURE), *LIFETIMES, *address_pair(PEER, LOCAL)),
        )
        reply = self._reply(msg)
        state = self.state[spi]
        if state is GONE:
            self._expect(reply, errno.ESRCH, Diagnostic.SA_NOTFOUND)
        elif state == SaState.LARVAL:
            self._expect(reply, errno.EINVAL, Diagnostic.MISSING_EKEY)
        else:
            self._expect(reply, 0)

    @rule(spi=spis)
    def delete(self, spi: int) -> None:
        reply = self._reply(by_spi(SadbMsgType.DELETE, spi, LOCAL))
        if self.state[spi] is GONE:
            self._expect(reply, errno.ESRCH, Diagnostic.SA_NOTFOUND)
        else:
            self._expect(reply, 0)
            self.state[spi] = GONE

    @rule(spi=spis)
    def get(self, spi: int) -> None:
        reply = self._reply(by_spi(SadbMsgType.GET, spi, LOCAL, PEER))
        state = self.state[spi]
        if state is GONE:
            self._expect(reply, errno.ESRCH, Diagnostic.SA_NOTFOUND)
        else:
            sa_ext = reply.find(ExtType.SA)
            assert isinstance(sa_ext, SadbSa) and sa_ext.state == state

    @rule(spi=spis)
    def packet_arrives(self, spi: int) -> None:
        sa = self.sadb.lookup_inbound(spi, LOCAL_B)
        state = self.state[spi]
        if state is GONE:
            assert sa is None
            return
        assert sa is not None
        result = self.sadb.hold_inbound(sa, b"x")
        assert result is (HoldResult.HELD if state == SaState.LARVAL else HoldResult.PROCESS)

    @rule(dt=st.integers(min_value=1, max_value=120))
    def time_passes(self, dt: int) -> None:
        self.now += dt
        expires = self.sadb.age(self.now)
        expired = 0
        for spi, state in self.state.items():
            age = self.now - self.added[spi]
            new = state
            if (state == SaState.LARVAL and age >= LARVAL_LIFE) or (
                state in (SaState.MATURE, SaState.DYING) and age >= HARD
            ):
                new = GONE
            elif state == SaState.MATURE and age >= SOFT:
                new = SaState.DYING
            if new != state:
                # A LARVAL SA dies without an EXPIRE (illumos sadb_age_assoc).
                expired += state != SaState.LARVAL
                self.state[spi] = new
        assert len(expires) == expired

    @invariant()
    def sadb_agrees_with_the_model(self) -> None:
        if not hasattr(self, "sadb"):
            return
        for spi, state in self.state.items():
            sa = self.sadb.lookup_inbound(spi, LOCAL_B)
            assert (sa.state if sa is not None else GONE) == state, hex(spi)
        assert len(self.sadb) == sum(s is not GONE for s in self.state.values())


TestSaMachine = SaMachine.TestCase
TestSaMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_every_state_and_event_is_either_a_transition_or_a_refusal() -> None:
    from larval.sadb import SaEvent

    for state in (SaState.LARVAL, SaState.MATURE, SaState.DYING, SaState.DEAD):
        for event in SaEvent:
            assert ((state, event) in TRANSITIONS) != ((state, event) in REFUSALS), (state, event)


def test_deleting_twice_is_refused_not_raised(sadb: Sadb) -> None:
    spi = larval_spi(sadb)
    assert sadb.handle(by_spi(SadbMsgType.DELETE, spi, LOCAL), 0.0)[0].message.errno == 0
    again = sadb.handle(by_spi(SadbMsgType.DELETE, spi, LOCAL), 0.0)[0].message
    assert (again.errno, again.diagnostic) == (errno.ESRCH, Diagnostic.SA_NOTFOUND)
