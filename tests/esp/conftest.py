"""`path` and `esp_path` (`tests/esp/paths.py`): a test of an SA's batch calls runs once
on each ESP path, Python (the reference) and the compiled helper."""

from __future__ import annotations

from tests.esp.paths import esp_path, path

__all__ = ["esp_path", "path"]
