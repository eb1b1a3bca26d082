"""Shared test fixtures (keep minimal)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "corpora" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The bundled fixture corpora (`corpora/fixtures/`, see its LICENSE-NOTE.txt)."""
    return FIXTURES_DIR


# Hypothesis profiles: "ci" (loaded by default) keeps property tests fast; `--hypothesis-profile=long` is the
# by-hand soak. A test whose examples are costly (each runs the real clean job) takes a fraction of
# ``settings.default.max_examples`` (see tests/pipelines/test_clean_properties.py).
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is in the dev extra
    pass
else:
    _slow_ok = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("ci", max_examples=20, deadline=None, suppress_health_check=_slow_ok, print_blob=True)
    settings.register_profile("long", max_examples=500, deadline=None, suppress_health_check=_slow_ok, print_blob=True)
    settings.load_profile("ci")
