"""Fixtures for the SADB tests: an SADB whose released packets are recorded."""

from __future__ import annotations

import pytest

from larval.sadb import Sadb
from tests.sadb.support import Released, recording_sadb


@pytest.fixture
def released() -> Released:
    return Released()


@pytest.fixture
def sadb(released: Released) -> Sadb:
    return recording_sadb(released)
