"""The security association database: LARVAL SAs, held packets, acquire records, lifetimes."""

from larval.sadb.acquire import AcquireRecord
from larval.sadb.counters import SadbCounters
from larval.sadb.errors import SadbError
from larval.sadb.heap import GcFreezer
from larval.sadb.sa import HoldResult, SaEvent, SecurityAssociation
from larval.sadb.sadb import Audience, PfkeyReply, Sadb, supported_extensions

__all__ = [
    "AcquireRecord",
    "Audience",
    "GcFreezer",
    "HoldResult",
    "PfkeyReply",
    "SaEvent",
    "Sadb",
    "SadbCounters",
    "SadbError",
    "SecurityAssociation",
    "supported_extensions",
]
