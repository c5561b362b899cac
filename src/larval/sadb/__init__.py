"""The security association database: LARVAL SAs, held packets, acquire records, lifetimes."""

from larval.sadb.acquire import AcquireRecord
from larval.sadb.counters import SadbCounters
from larval.sadb.errors import SadbError
from larval.sadb.fast_path import FastPath, WireReply
from larval.sadb.heap import GcFreezer
from larval.sadb.sa import HoldResult, SaEvent, SecurityAssociation
from larval.sadb.sadb import Audience, PfkeyReply, Sadb, supported_extensions

__all__ = [
    "AcquireRecord",
    "Audience",
    "FastPath",
    "GcFreezer",
    "HoldResult",
    "PfkeyReply",
    "SaEvent",
    "Sadb",
    "SadbCounters",
    "SadbError",
    "SecurityAssociation",
    "WireReply",
    "supported_extensions",
]
