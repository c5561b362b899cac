"""`python -m larval.bench NAME [--json]`: one benchmark, or all of them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def _sadb(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import sadb

    return sadb.run(n_sas=args.sas)


def _esp(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import esp

    return esp.run()


def _spd(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import spd

    return spd.run()


def _ike(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import ike

    return ike.run(n=args.setups, runs=args.ike_runs, cert_n=args.cert_setups, store=args.store)


def _tunnel(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import tunnel

    return tunnel.run(seconds=args.seconds, runs=args.runs, store=args.store)


def _ra(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import ra

    return ra.run(n=args.clients)


def _store(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import store

    return store.run()


BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "sadb": _sadb,
    "spd": _spd,
    "esp": _esp,
    "ike": _ike,
    "tunnel": _tunnel,
    "ra": _ra,
    "store": _store,
}


def main(argv: list[str] | None = None) -> int:
    from larval.bench.store_cost import MODES

    parser = argparse.ArgumentParser(prog="python -m larval.bench", description=__doc__)
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--sas", type=int, default=1_000_000, help="SAs in the SADB benchmark")
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 time, tunnel benchmark")
    parser.add_argument("--runs", type=int, default=3, help="iperf3 runs, tunnel benchmark")
    parser.add_argument(
        "--setups", type=int, default=2000, help="IKE SA setups of the PSK case, IKE benchmark"
    )
    parser.add_argument(
        "--cert-setups",
        type=int,
        default=1000,
        help="IKE SA setups of each certificate case, IKE benchmark (0: none)",
    )
    parser.add_argument("--ike-runs", type=int, default=3, help="runs of each pair, IKE benchmark")
    parser.add_argument(
        "--store",
        choices=MODES,
        default="both",
        help="larval with its state store off, on (SQLite), or both in the same run (the "
        "cost as on/off), IKE and tunnel benchmarks; etcd: both, the store in one local "
        "etcd member, IKE benchmark (default %(default)s)",
    )
    parser.add_argument(
        "--clients", type=int, default=1000, help="road warriors, remote-access benchmark"
    )
    args = parser.parse_args(argv)
    names = list(BENCHES) if args.bench == "all" else [args.bench]
    results = {name: BENCHES[name](args) for name in names}
    out = results[names[0]] if len(names) == 1 else results
    if args.json:
        json.dump(out, sys.stdout)
        print()
    else:
        for name, figures in results.items():
            print(f"{name}:")
            for key, value in figures.items():
                print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
