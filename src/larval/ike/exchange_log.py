"""One INFO line per exchange, for either version: what an operator greps for first.

::

    s2s[3]: IKE_AUTH initiated, ok, peer 192.0.2.1[4500], SPIs 1a2b3c4d5e6f7081/90a1b2c3d4e5f607,
        CHILD_SA net SPIs c1d2e3f4 in / 0a0b0c0d out            (one line)
    s2s[4]: Quick Mode responded, NO_PROPOSAL_CHOSEN, peer 192.0.2.1[500], SPIs ...

The IKE SA is named by its connection and a number unique in this process (strongSwan's
``s2s[3]``), which a rekeyed IKE SA does not share with the one it replaces. The same
facts go with the record as fields (`ExchangeFields`), for ``--log-format json``. Only
names, addresses and SPIs: never a key, a nonce or an AUTH value.

Each version calls `log_exchange` from the one place its session learns an exchange is
over (`larval.ikev2.session.IkeSession._exchange_over`,
`larval.ikev1.session.IkeV1Session._exchange_over`), after checking `enabled()`: with INFO
off, an exchange costs nothing more than that check.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

from larval.ike.events import ChildSaUp, Event

__all__ = ["enabled", "log_exchange", "next_unique_id"]

log = logging.getLogger("larval.ike")
_unique_ids = itertools.count(1)


def next_unique_id() -> int:
    """A number for a new IKE SA, unique in this process (strongSwan's unique id)."""
    return next(_unique_ids)


def enabled() -> bool:
    return log.isEnabledFor(logging.INFO)


def log_exchange(
    connection: str, unique_id: int, spi_i: bytes, spi_r: bytes, exchange: str,
    initiated: bool, result: str, peer: tuple[str, int], events: Iterable[Event] = (),
) -> None:  # fmt: skip
    """The line of one exchange; `events`: those it reported, its CHILD_SAs among them."""
    name = f"{connection}[{unique_id}]"
    spis = f"{spi_i.hex() or '0' * 16}/{(spi_r or bytes(8)).hex()}"
    children = [e for e in events if isinstance(e, ChildSaUp)]
    fields: dict[str, object] = {
        "ike_sa": name, "connection": connection, "unique_id": unique_id,
        "exchange": exchange, "initiated": initiated, "result": result,
        "peer": peer[0], "peer_port": peer[1],
        "spi_i": spi_i.hex(), "spi_r": spi_r.hex(),
    }  # fmt: skip
    text = ""
    if children:
        fields["child_sas"] = [{"name": c.child.name, "spi_in": f"{c.spi_in:08x}",
                                "spi_out": f"{c.spi_out:08x}"} for c in children]  # fmt: skip
        text = "".join(f", CHILD_SA {c.child.name} SPIs {c.spi_in:08x} in / {c.spi_out:08x} out"
                       for c in children)  # fmt: skip
    log.info("%s: %s %s, %s, peer %s[%d], SPIs %s%s", name, exchange,
             "initiated" if initiated else "responded", result, peer[0], peer[1], spis, text,
             extra=fields)  # fmt: skip
