"""Shared test fixtures (keep minimal)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "corpora" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The bundled fixture corpora (`corpora/fixtures/`, see its LICENSE-NOTE.txt)."""
    return FIXTURES_DIR
