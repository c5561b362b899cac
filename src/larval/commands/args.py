"""What the subcommands share in reading their arguments."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(
    low: int, high: int, unit: str = "", why: str = "", *, hex_: bool = False
) -> Callable[[str], int]:
    """An argparse type: an integer (decimal, or 0x hex) in [low, high]; a value that is
    not one is refused with the range, its unit and why the range is what it is."""
    shown = f"{low:#x} to {high:#x}" if hex_ else f"{low} to {high}"
    shown += f" {unit}" if unit else ""
    reason = f"; {why}" if why else ""

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number ({shown})") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: {shown}{reason}")
        return value

    return parse
