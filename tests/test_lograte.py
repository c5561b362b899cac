"""The per-source limit on log lines that a sender can provoke."""

from __future__ import annotations

import logging

import pytest

from larval.lograte import LogLimiter


@pytest.fixture
def limiter() -> LogLimiter:
    return LogLimiter(logging.getLogger("larval.test.lograte"), burst=3, total=5, interval=10.0)


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "larval.test.lograte"]


def test_a_flood_from_one_source_is_a_few_lines_and_a_count(
    limiter: LogLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    logged = [limiter.log(0.0, "192.0.2.1", logging.INFO, "bad %d", i) for i in range(2000)]
    assert logged.count(True) == 3
    assert _messages(caplog) == ["bad 0", "bad 1", "bad 2"]
    limiter.flush(9.9)
    assert len(_messages(caplog)) == 3  # the window has not ended
    limiter.flush(10.0)
    assert _messages(caplog)[-1] == "192.0.2.1: 1997 more like this suppressed in 10 s"
    assert limiter.log(10.5, "192.0.2.1", logging.INFO, "bad again")  # a new window


def test_sources_are_limited_apart_and_together(
    limiter: LogLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for source in ("a", "b", "c"):
        for _ in range(4):
            limiter.log(1.0, source, logging.INFO, "from %s", source)
    # a: 3 lines, b: 2 before the total of 5 is reached, c: none
    assert _messages(caplog) == ["from a"] * 3 + ["from b"] * 2
    assert limiter.suppressed == 7
    limiter.flush(11.0)
    assert sorted(_messages(caplog)[5:]) == [
        "a: 1 more like this suppressed in 10 s",
        "all sources: 6 more like this suppressed in 10 s",
    ]


def test_many_sources_over_the_overall_limit_report_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    limiter = LogLimiter(logging.getLogger("larval.test.lograte"), burst=5, total=50)
    for i in range(2000):
        limiter.log(0.0, f"198.51.100.{i % 250}/{i}", logging.INFO, "opener %d", i)
    limiter.flush(60.0)
    lines = _messages(caplog)
    assert len(lines) == 51
    assert lines[-1] == "all sources: 1950 more like this suppressed in 60 s"


def test_sources_kept_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    limiter = LogLimiter(
        logging.getLogger("larval.test.lograte"), burst=1, total=10**6, max_sources=100
    )
    for i in range(10_000):
        limiter.log(0.0, f"source-{i}", logging.INFO, "x")
    assert len(limiter._sources) == 100
