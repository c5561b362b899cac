"""`python -m larval.bench NAME [--json]`: one benchmark, or all of them; `all` closes
with the table of issue 15 (`larval.bench.table`)."""

from __future__ import annotations

import argparse
import functools
import gc
import json
import sys
from collections.abc import Callable
from typing import Any

from larval.bench import table

SADB_SAS = 1_000_000  # bench sadb's SADB
SCALE_SAS = 10_000  # bench tunnel --sas in `all`, and bench ike --established (issue 15 §4)
NEXT_SETUPS = 2000  # setups measured with the --established IKE_SAs up


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
    if args.established:
        return _established(args)
    from larval.bench import ike

    return ike.run(n=args.setups, runs=args.ike_runs, cert_n=args.cert_setups, store=args.store)


def _established(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import ike_scale

    return ike_scale.run(n=args.established, more=args.next_setups)


def _tunnel(args: argparse.Namespace) -> dict[str, Any]:
    if args.tunnel_sas:
        return _tunnel_sas(args)
    from larval.bench import tunnel

    if args.udp_only:
        return tunnel.run_udp(seconds=args.seconds, runs=args.runs, sizes=args.udp_size)
    return tunnel.run(seconds=args.seconds, runs=args.runs, store=args.store)


def _tunnel_sas(args: argparse.Namespace) -> dict[str, Any]:
    from larval.bench import tunnel_scale

    return tunnel_scale.run(n_sas=args.tunnel_sas, seconds=args.seconds, runs=args.runs)


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


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked against the benchmark they are for (a meaningless
    combination is refused naming the option), with their defaults filled in."""
    from larval.bench.store_cost import MODES
    from larval.bench.tunnel import UDP_SIZES
    from larval.bench.tunnel_scale import MAX_SAS

    parser = argparse.ArgumentParser(prog="python -m larval.bench", description=__doc__)
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--sas",
        type=int,
        help=f"bench sadb: SAs in the SADB (default {SADB_SAS:,}); bench tunnel: run the "
        f"scale case instead, with this many CHILD_SAs beside one (1 to {MAX_SAS})",
    )
    parser.add_argument(
        "--sadb-sas", type=int, help=f"all: SAs in the SADB benchmark (default {SADB_SAS:,})"
    )
    parser.add_argument(
        "--tunnel-sas",
        type=int,
        help=f"all: CHILD_SAs of the tunnel scale case (default {SCALE_SAS:,}; 0: not run)",
    )
    parser.add_argument(
        "--established",
        type=int,
        help="bench ike: run the scale case instead, with this many IKE_SAs up; all: the "
        f"same after bench ike (default {SCALE_SAS:,}; 0: not run)",
    )
    parser.add_argument(
        "--next-setups",
        type=int,
        help=f"setups measured with the --established IKE_SAs up (default {NEXT_SETUPS})",
    )
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 time, tunnel benchmark")
    parser.add_argument("--runs", type=int, default=3, help="iperf3 runs, tunnel benchmark")
    parser.add_argument(
        "--setups", type=int, help="IKE SA setups of the PSK case, IKE benchmark (default 2000)"
    )
    parser.add_argument(
        "--cert-setups",
        type=int,
        help="IKE SA setups of each certificate case, IKE benchmark (0: none; default 1000)",
    )
    parser.add_argument("--ike-runs", type=int, help="runs of each pair, IKE benchmark (default 3)")
    parser.add_argument(
        "--store",
        choices=MODES,
        help="larval with its state store off, on (SQLite), or both in the same run (the "
        "cost as on/off), IKE and tunnel benchmarks; etcd: both, the store in one local "
        "etcd member, IKE benchmark (default both)",
    )
    parser.add_argument(
        "--udp-only",
        action="store_true",
        help="bench tunnel: only the UDP case (larval without the state store, libipsec, "
        "wireguard-go), with each larval gateway's CPU per packet delivered",
    )
    parser.add_argument(
        "--udp-size",
        type=int,
        action="append",
        help="with --udp-only: a payload size in bytes (repeat for several; default 64 and 1400)",
    )
    parser.add_argument(
        "--clients", type=int, default=1000, help="road warriors, remote-access benchmark"
    )
    args = parser.parse_args(argv)
    for problem in _refusals(args, MAX_SAS):
        parser.error(problem)
    bench = args.bench
    args.tunnel_sas = args.sas if bench == "tunnel" else args.tunnel_sas if bench == "all" else None
    if args.tunnel_sas is None and bench == "all":
        args.tunnel_sas = SCALE_SAS
    args.sas = args.sadb_sas if bench == "all" else args.sas
    if args.sas is None or bench == "tunnel":
        args.sas = SADB_SAS
    if args.established is None and bench == "all":
        args.established = SCALE_SAS
    args.next_setups = NEXT_SETUPS if args.next_setups is None else args.next_setups
    args.setups = 2000 if args.setups is None else args.setups
    args.cert_setups = 1000 if args.cert_setups is None else args.cert_setups
    args.ike_runs = 3 if args.ike_runs is None else args.ike_runs
    args.store = args.store or "both"
    args.udp_size = tuple(args.udp_size) if args.udp_size else UDP_SIZES
    return args


def _refusals(args: argparse.Namespace, max_sas: int) -> list[str]:
    """Why the options do not make sense together, if they do not."""
    bench, problems = args.bench, []
    if args.sas is not None and bench not in ("sadb", "tunnel"):
        problems.append(
            "--sas is for bench sadb or bench tunnel; with all, say --sadb-sas and --tunnel-sas"
            if bench == "all"
            else f"--sas is for bench sadb or bench tunnel, not {bench}"
        )
    if args.sadb_sas is not None and bench != "all":
        problems.append("--sadb-sas is for all; bench sadb takes --sas")
    if args.tunnel_sas is not None and bench != "all":
        problems.append("--tunnel-sas is for all; bench tunnel takes --sas")
    if args.established is not None and bench not in ("ike", "all"):
        problems.append(f"--established is for bench ike or all, not {bench}")
    if args.next_setups is not None and not (args.established or bench == "all"):
        problems.append("--next-setups goes with --established (bench ike) or all")
    if args.udp_only and bench != "tunnel":
        problems.append(f"--udp-only is for bench tunnel, not {bench}")
    if args.udp_only and (args.sas is not None or args.store is not None):
        problems.append("--udp-only runs larval without the state store and with one SA")
    if args.udp_size is not None and not args.udp_only:
        problems.append("--udp-size goes with --udp-only")
    for size in args.udp_size or ():
        if not 16 <= size <= 65507 - 36:
            problems.append(f"--udp-size must be from 16 to 65471 bytes, not {size}")
    scale_tunnel = bench == "tunnel" and args.sas is not None
    scale_ike = bench == "ike" and args.established is not None
    if scale_tunnel and args.store is not None:
        problems.append("--store does not apply to bench tunnel --sas (no state store there)")
    if scale_ike:
        for option in ("setups", "cert_setups", "ike_runs", "store"):
            if getattr(args, option) is not None:
                flag = "--" + option.replace("_", "-")
                problems.append(f"{flag} does not apply to bench ike --established")
    checks = [
        ("--sas", args.sas, 1, max_sas if bench == "tunnel" else None),
        ("--sadb-sas", args.sadb_sas, 1, None),
        ("--tunnel-sas", args.tunnel_sas, 0, max_sas),
        ("--established", args.established, 1 if bench == "ike" else 0, None),
        ("--next-setups", args.next_setups, 0, None),
        ("--seconds", args.seconds, 1, None),
        ("--runs", args.runs, 1, None),
    ]
    for flag, value, least, most in checks:
        if value is None:
            continue
        if value < least or (most is not None and value > most):
            bound = f"from {least} to {most}" if most is not None else f"at least {least}"
            problems.append(f"{flag} must be {bound}, not {value}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.bench == "all":
        runs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            (name, functools.partial(bench, _plain(args))) for name, bench in BENCHES.items()
        ]
        if args.tunnel_sas:
            runs.append(("tunnel_sas", functools.partial(_tunnel_sas, args)))
        if args.established:
            runs.append(("established", functools.partial(_established, args)))
        results = {}
        for name, bench in runs:
            results[name] = bench()
            # What a benchmark left in cycles is collected now, not by a full collection
            # of this process in the middle of the next one's measurement (its CPU
            # taken from the processes the next one measures).
            gc.collect()
    else:
        results = {args.bench: BENCHES[args.bench](args)}
    rows = table.build(results) if args.bench == "all" else []
    out: dict[str, Any] = results if args.bench == "all" else results[args.bench]
    if args.json:
        json.dump({**out, "table": [r.to_dict() for r in rows]} if rows else out, sys.stdout)
        print()
        return 0
    for name, figures in results.items():
        print(f"{name}:")
        for key, value in figures.items():
            print(f"  {key}: {value}")
    if rows:
        print("table (issue 15): larval beside its peer of the same run, or the goal")
        print(table.render(rows))
    return 0


def _plain(args: argparse.Namespace) -> argparse.Namespace:
    """`args` for the benchmarks of `all` as they run alone: the scale cases run after."""
    return argparse.Namespace(**{**vars(args), "tunnel_sas": None, "established": None})


if __name__ == "__main__":
    sys.exit(main())
