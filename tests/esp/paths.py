"""The two ESP paths a test of batch calls runs on, Python (the reference) and the
compiled helper; where the helper is not built, the compiled case is skipped, which CI
(LARVAL_NO_SKIP) counts as a failure.

`path` names the path, for SAs a test makes itself (``EspSa(..., esp_path=path)``);
`esp_path` also sets ``LARVAL_ESP_HELPER``, for SAs something else makes (a stack's
packet path). Import the one a module needs; `tests/esp/conftest.py` offers both."""

from __future__ import annotations

import pytest

from larval.esp import helper

__all__ = ["esp_path", "path"]


def _taken(request: pytest.FixtureRequest) -> str:
    ok, why_not = helper.built()
    if request.param == "compiled" and not ok:
        pytest.skip(f"the compiled ESP helper is {why_not}")
    return str(request.param)


@pytest.fixture(params=["python", "compiled"])
def path(request: pytest.FixtureRequest) -> str:
    return _taken(request)


@pytest.fixture(params=["python", "compiled"])
def esp_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ESP batch path the SAs made during the test take (`larval.esp.helper`)."""
    taken = _taken(request)
    monkeypatch.setenv(helper.HELPER_ENV, taken)
    return taken
