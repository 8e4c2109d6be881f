"""The made-up results dict of tests/report/fakes.py as a fixture."""

from __future__ import annotations

import pytest

from tests.report import fakes


@pytest.fixture
def results(tmp_path) -> dict:
    return fakes.results(tmp_path)
