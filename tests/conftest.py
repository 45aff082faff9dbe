"""Shared fixtures: a JIT per test, and the clang-14 IR fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

import orcjit

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def jit():
    with orcjit.JIT() as j:
        yield j


@pytest.fixture(params=["eager", "lazy"])
def any_jit(request):
    """An eager and a lazy JIT: behaviour must not depend on when code is compiled."""
    with orcjit.JIT(lazy=request.param == "lazy") as j:
        yield j


@pytest.fixture
def fixture_ir():
    """Text of tests/fixtures/NAME.ll."""
    return lambda name: (FIXTURES / f"{name}.ll").read_text()
