"""Pytest fixtures of the XenAPI simulator, for conftest files anywhere in tests/ to import::

    from tests.xensim.fixtures import xen_simulator  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.xensim import PoolSpec, Simulator


@pytest.fixture
def xen_simulator() -> Iterator[Simulator]:
    """A started simulator of the default pool (one host, local storage, one network, a Debian template)."""
    with Simulator(PoolSpec()) as sim:
        yield sim
