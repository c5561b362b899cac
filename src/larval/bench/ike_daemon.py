"""`python -m larval.bench.ike_daemon CONFIG`: `larval run -c CONFIG` with every
connection's COOKIE threshold out of reach, as `bench ike`'s larval peers and charons
have it: the flood of setups from one address is the benchmark, not an attack (RFC 7296
§2.6). What `bench ike --established` runs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys

from larval.bench.ike import COOKIE_THRESHOLD
from larval.daemon.ike_daemon import IkeDaemon


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    daemon = IkeDaemon(argv[0])
    connections = daemon.keymgr.connections
    for name, conn in connections.items():
        ike = dataclasses.replace(conn.ike, cookie_threshold=COOKIE_THRESHOLD)
        connections[name] = dataclasses.replace(conn, ike=ike)
    asyncio.run(daemon.run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
