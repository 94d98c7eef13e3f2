"""Session fixtures shared by unit and integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.tiny_model import build_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("model") / "tiny")
