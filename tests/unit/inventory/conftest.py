"""Helpers shared by the inventory unit tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fleet.inventory import load_inventory


@pytest.fixture
def write(tmp_path: Path):
    """write("hosts.ini", text) -> Path: a dedented file under tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


@pytest.fixture
def load(write):
    """load("hosts.ini", text) -> Inventory loaded from that file."""

    def _load(name: str, text: str):
        return load_inventory(write(name, text))

    return _load
