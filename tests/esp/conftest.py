"""`path`: a test of an SA's batch calls runs once on each ESP path, Python (the
reference) and the compiled helper; where the helper is not built, the compiled case is
skipped, which CI (LARVAL_NO_SKIP) counts as a failure."""

from __future__ import annotations

import pytest

from larval.esp import helper


@pytest.fixture(params=["python", "compiled"])
def path(request: pytest.FixtureRequest) -> str:
    ok, why_not = helper.built()
    if request.param == "compiled" and not ok:
        pytest.skip(f"the compiled ESP helper is {why_not}")
    return str(request.param)
