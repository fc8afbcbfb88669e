"""Shared fixtures. Real recorded files live in ``../shared/data`` beside the checkout: tests that
need them skip with a reason where it is absent (a user's clone) and fail when ``CI=true``."""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
DATA = SHARED / "data"


def shared_file(relpath: str) -> pathlib.Path:
    """Path of a file under ../shared; skip (or fail on CI) when it is missing."""
    path = SHARED / relpath
    if not path.exists():
        msg = f"shared test data {relpath} not found at {path} (../shared is absent)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg, allow_module_level=True)
    return path


@pytest.fixture
def shared():
    return shared_file


def need(module: str, reason: str | None = None):
    """Import an optional dependency; skip without it, but fail on CI (the test extra installs
    every optional dependency, so a missing one there is a broken install, not a gap)."""
    try:
        return __import__(module)
    except ImportError:
        msg = reason or f"{module} is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg, allow_module_level=True)
