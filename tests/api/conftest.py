"""API tests: a real `b2bua run` process and its real SQLite store, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from b2bua.testing.server import RunningServer
from tests.api.helpers import start


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/api" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start(tmp_path_factory.mktemp("api"))
    try:
        yield srv
    finally:
        srv.stop()
