"""The stack: SADB and SPD behind PF_KEY, and what happens to each packet."""

from larval.stack.flow import PacketError, parse_flow
from larval.stack.stack import Outbound, Stack, Verdict

__all__ = ["Outbound", "PacketError", "Stack", "Verdict", "parse_flow"]
