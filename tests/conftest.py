"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest

# Keep any developer's RUNWIRE_* environment out of the tests' configuration.
for _name in [name for name in os.environ if name.startswith("RUNWIRE_")]:
    del os.environ[_name]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dev-mode state (the generated secret) goes to a temporary directory."""
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
