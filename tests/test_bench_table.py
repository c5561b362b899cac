"""The closing table of `python -m larval.bench all` (`larval.bench.table`), and the
options of the scale cases: which combinations are refused, and what each sets."""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any

import pytest

from larval.bench import table
from larval.bench.__main__ import SADB_SAS, SCALE_SAS, parse


def _results() -> dict[str, Any]:
    return {
        "tunnel": {
            "larval_mbps": 651.0,
            "strongswan_mbps": 286.0,
            "wireguard_mbps": 343.0,
            "udp64_larval_pps": 100_000,
            "udp64_strongswan_pps": 50_000,
            "udp64_wireguard_pps": None,  # wireguard-go not installed
            "udp1400_larval_pps": 80_000,
            "udp1400_strongswan_pps": 0,  # measured, nothing came through
            "udp1400_wireguard_pps": 160_000,
        },
        "ike": {"ike_sa_per_s": 674.0, "strongswan_ike_sa_per_s": 779.0},
        "sadb": {
            "getspi_update_per_s": 33_000,
            "lookups_per_s": 734_000,
            "bytes_per_sa": 512,
            "goals": {
                "getspi_update_per_s": 100_000,
                "lookups_per_s": 1_000_000,
                "bytes_per_sa": 1024,
            },
        },
        "tunnel_sas": {"sas": 10_000, "mbps": 95.0, "one_sa_mbps": 100.0},
        "established": {
            "established": 10_000,
            "rss_per_ike_sa": 20_000,
            "strongswan_rss_per_ike_sa": 25_000,
            "next_ike_sa_per_s": 600.0,
            "strongswan_next_ike_sa_per_s": 300.0,
            "status_s": 2.0,
            "strongswan_list_sas_s": None,
        },
    }


def _by(rows: list[table.Row], figure: str, peer: str) -> table.Row:
    (found,) = [r for r in rows if r.figure.startswith(figure) and r.peer_name == peer]
    return found


def test_each_figure_beside_its_peer_with_the_ratio_and_the_goal() -> None:
    rows = table.build(_results())
    tcp = _by(rows, "tunnel iperf3 TCP", "libipsec")
    assert (tcp.larval, tcp.peer, tcp.ratio, tcp.goal, tcp.met) == (
        651.0,
        286.0,
        2.28,
        ">= 5",
        False,
    )
    wg = _by(rows, "tunnel iperf3 TCP", "wireguard-go")
    assert (wg.ratio, wg.met) == (1.9, True)
    assert _by(rows, "tunnel UDP 64 B", "libipsec").ratio == 2.0
    assert _by(rows, "tunnel UDP 1400 B", "wireguard-go").ratio == 0.5
    ike = _by(rows, "ike IKE_SA", "charon")
    assert (ike.ratio, ike.goal, ike.met) == (0.87, ">= 1.5", False)
    pairs = _by(rows, "sadb GETSPI", "goal")
    assert (pairs.larval, pairs.peer, pairs.ratio, pairs.met) == (33_000, 100_000, 0.33, False)
    assert _by(rows, "sadb lookups", "goal").ratio == 0.73
    # Bytes: lower is better, the goal says so.
    memory = _by(rows, "sadb resident bytes", "goal")
    assert (memory.ratio, memory.goal, memory.met) == (0.5, "<= 1", True)
    scale = _by(rows, "tunnel --sas 10000", "one SA")
    assert (scale.ratio, scale.goal, scale.met) == (0.95, ">= 0.9", True)
    rss = _by(rows, "ike --established: resident", "charon")
    assert (rss.ratio, rss.goal, rss.met) == (0.8, "", None)
    assert "10000 up" in rss.figure
    setups = _by(rows, "ike --established: next", "charon")
    assert (setups.ratio, setups.met) == (2.0, True)


def test_a_missing_peer_or_benchmark_is_shown_missing() -> None:
    results = _results()
    rows = table.build(results)
    # wireguard-go not measured, and a peer that delivered nothing: no ratio.
    for figure, peer in (("tunnel UDP 64 B", "wireguard-go"), ("tunnel UDP 1400 B", "libipsec"),
                         ("ike --established: status", "swanctl --list-sas")):  # fmt: skip
        row = _by(rows, figure, peer)
        assert row.larval is not None and row.ratio is None and row.met is None
    assert _by(rows, "tunnel UDP 64 B", "wireguard-go").peer is None
    # Benchmarks that did not run, or were skipped.
    del results["tunnel_sas"], results["established"]
    results["tunnel"] = {"skipped": "needs root, network namespaces and iperf3"}
    rows = table.build(results)
    assert len(rows) == len(table.build(_results()))
    assert _by(rows, "tunnel --sas N", "one SA").larval is None
    assert _by(rows, "tunnel iperf3 TCP", "libipsec").larval is None
    text = table.render(rows)
    assert text.splitlines()[0].split() == ["figure", "larval", "peer", "ratio", "goal", "met"]
    assert len(text.splitlines()) == len(rows) + 1
    line = next(s for s in text.splitlines() if s.startswith("tunnel --sas N"))
    assert line.split()[-4:] == ["SA", "missing", ">=", "0.9"]
    assert table.build({}) and all(r.larval is None for r in table.build({}))


def test_render_shows_figures_ratios_and_whether_the_goal_is_met() -> None:
    lines = table.render(table.build(_results())).splitlines()
    tcp = next(s for s in lines if s.startswith("tunnel iperf3 TCP") and "libipsec" in s)
    assert tcp.split()[-7:] == ["651", "286", "libipsec", "2.28", ">=", "5", "no"]
    sadb = next(s for s in lines if s.startswith("sadb lookups/s"))
    assert sadb.split()[-7:] == ["734,000", "1,000,000", "goal", "0.73", ">=", "1", "no"]
    status = next(s for s in lines if s.startswith("ike --established: status"))
    assert status.split()[-6:] == ["2.00", "missing", "swanctl", "--list-sas", "missing", "-"]


def test_a_goal_missed_by_less_than_the_rounding_is_not_met() -> None:
    short = table.row("sadb GETSPI+UPDATE/s", 99_846, 100_000, "goal", ">= 1")
    assert (short.ratio, short.met) == (1.0, False)
    assert table.row("x", 100_000, 100_000, "goal", ">= 1").met is True
    over = table.row("bytes", 1_025, 1_024, "goal", "<= 1")
    assert (over.ratio, over.met) == (1.0, False)
    assert table.row("ratio", 0.8951, 1, "one SA", ">= 0.9").met is False


def test_table_rows_are_plain_dicts_for_json() -> None:
    row = table.row("x", 3, 2, "peer", ">= 1")
    assert row.to_dict() == {"figure": "x", "larval": 3, "peer": 2, "peer_name": "peer",
                             "ratio": 1.5, "goal": ">= 1", "met": True}  # fmt: skip
    assert table.row("x", None, 2, "peer", ">= 1").to_dict()["ratio"] is None
    assert table.row("x", True, 2, "peer").larval is None  # not a figure


def test_scale_options_and_their_defaults() -> None:
    everything = parse(["all"])
    assert (everything.sas, everything.tunnel_sas, everything.established) == (
        SADB_SAS, SCALE_SAS, SCALE_SAS)  # fmt: skip
    assert everything.next_setups == 2000 and everything.store == "both"
    tunnel = parse(["tunnel", "--sas", "50"])
    assert tunnel.tunnel_sas == 50
    assert parse(["tunnel"]).tunnel_sas is None  # the usual tunnel benchmark
    assert parse(["sadb", "--sas", "7"]).sas == 7
    ike = parse(["ike", "--established", "20", "--next-setups", "30"])
    assert (ike.established, ike.next_setups) == (20, 30)
    assert parse(["ike"]).established is None
    chosen = parse(["all", "--sadb-sas", "9", "--tunnel-sas", "0", "--established", "40"])
    assert (chosen.sas, chosen.tunnel_sas, chosen.established) == (9, 0, 40)
    udp = parse(["tunnel", "--udp-only"])
    assert udp.udp_only and udp.udp_size == (64, 1400)
    assert parse(["tunnel", "--udp-only", "--udp-size", "1400"]).udp_size == (1400,)
    assert not parse(["tunnel"]).udp_only


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["all", "--sas", "5"], "--sas is for bench sadb or bench tunnel; with all, say"),
        (["ike", "--sas", "5"], "--sas is for bench sadb or bench tunnel, not ike"),
        (["tunnel", "--sas", "0"], "--sas must be from 1 to 65533, not 0"),
        (["tunnel", "--sas", "65534"], "--sas must be from 1 to 65533, not 65534"),
        (["tunnel", "--sas", "9", "--store", "on"], "--store does not apply to bench tunnel --sas"),
        (["tunnel", "--tunnel-sas", "9"], "--tunnel-sas is for all; bench tunnel takes --sas"),
        (["sadb", "--sadb-sas", "9"], "--sadb-sas is for all; bench sadb takes --sas"),
        (["sadb", "--established", "9"], "--established is for bench ike or all, not sadb"),
        (["ike", "--established", "0"], "--established must be at least 1, not 0"),
        (["ike", "--established", "9", "--setups", "5"], "--setups does not apply to bench ike"),
        (["ike", "--established", "9", "--store", "off"], "--store does not apply to bench ike"),
        (["ike", "--next-setups", "5"], "--next-setups goes with --established"),
        (["all", "--established", "-1"], "--established must be at least 0, not -1"),
        (["ike", "--udp-only"], "--udp-only is for bench tunnel, not ike"),
        (["tunnel", "--udp-only", "--store", "on"], "--udp-only runs larval without the state"),
        (["tunnel", "--udp-only", "--sas", "9"], "--udp-only runs larval without the state"),
        (["tunnel", "--udp-size", "64"], "--udp-size goes with --udp-only"),
        (["tunnel", "--udp-only", "--udp-size", "8"], "--udp-size must be from 16 to 65471"),
    ],
)
def test_meaningless_combinations_are_refused_by_name(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


def test_all_prints_the_table_last_and_json_carries_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from larval.bench import __main__ as bench

    canned = _results()
    ran: list[tuple[str, object, object]] = []

    def fake(name: str) -> Any:
        def run(args: Any) -> dict[str, Any]:
            ran.append((name, args.tunnel_sas, args.established))
            figures: dict[str, Any] = canned.get(name, {"figure": 1})
            return figures

        return run

    monkeypatch.setattr(bench, "BENCHES", {name: fake(name) for name in bench.BENCHES})
    monkeypatch.setattr(bench, "_tunnel_sas", fake("tunnel_sas"))
    monkeypatch.setattr(bench, "_established", fake("established"))
    assert bench.main(["all", "--tunnel-sas", "30", "--established", "20"]) == 0
    # The others as they run alone, then the two scale cases with their N.
    assert ran[-2:] == [("tunnel_sas", 30, 20), ("established", 30, 20)]
    assert all(t is None and e is None for _, t, e in ran[:-2])
    out = capsys.readouterr().out.splitlines()
    start = out.index("table (issue 15): larval beside its peer of the same run, or the goal")
    assert out[start + 1].split()[0] == "figure"
    assert len(out) - start - 2 == len(table.build(canned))

    ran.clear()
    assert bench.main(["all", "--json", "--tunnel-sas", "0", "--established", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "tunnel_sas" not in printed and "established" not in printed
    assert [name for name, _, _ in ran] == list(bench.BENCHES)
    rows = printed["table"]
    assert rows[0] == {
        "figure": "tunnel iperf3 TCP, Mbit/s",
        "larval": 651.0,
        "peer": 286.0,
        "peer_name": "libipsec",
        "ratio": 2.28,
        "goal": ">= 5",
        "met": False,
    }
    scale = next(r for r in rows if r["figure"].startswith("tunnel --sas"))
    assert scale["larval"] is None and scale["ratio"] is None

    # One benchmark alone: its figures, no table.
    assert bench.main(["ike", "--json"]) == 0
    assert "table" not in json.loads(capsys.readouterr().out)


def test_all_collects_what_each_benchmark_left_before_the_next(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from larval.bench import __main__ as bench

    class Cyclic:
        me: Cyclic

    left: list[weakref.ref[Cyclic]] = []
    collected: list[bool] = []

    def first(args: Any) -> dict[str, Any]:
        garbage = Cyclic()
        garbage.me = garbage  # garbage once this returns, for the collector alone
        left.append(weakref.ref(garbage))
        return {}

    def second(args: Any) -> dict[str, Any]:
        collected.append(left[0]() is None)
        return {}

    monkeypatch.setattr(bench, "BENCHES", {"first": first, "second": second})
    enabled = gc.isenabled()
    gc.disable()  # no collection but the ones `all` makes
    try:
        assert bench.main(["all", "--tunnel-sas", "0", "--established", "0"]) == 0
    finally:
        if enabled:
            gc.enable()
    capsys.readouterr()
    assert collected == [True]
