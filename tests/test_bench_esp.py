"""`python -m larval.bench esp`'s per-packet CPU figures: each path that can run here is
measured, on both levels (the SA alone, the whole packet path), per call and batched."""

from __future__ import annotations

import pytest

from larval.bench import esp
from larval.esp import helper


def test_batch_figures_cover_each_path_that_runs_here() -> None:
    ok, why_not = helper.built()
    if not ok:
        pytest.skip(f"the compiled ESP helper is {why_not}")
    figures = esp.batch_figures(n=128)
    assert figures["esp_path"] == str(helper.esp_path())
    keys = {
        f"{what}_cpu_us"
        for what in (
            "encrypt", "encrypt_batch", "decrypt", "decrypt_batch",
            "outbound_one", "outbound_batch", "inbound_one", "inbound_batch",
        )
    }  # fmt: skip
    for path in ("python", "compiled"):
        assert set(figures[path]) == keys
        assert all(value > 0 for value in figures[path].values()), figures[path]
