"""The ``disk`` fixture: a 16 MiB tmpfs under the test's tmp_path (see disk.py)."""

import pytest

from tests.faults.disk import small_disk


@pytest.fixture
def disk(tmp_path):
    with small_disk(str(tmp_path / "disk"), 16 << 20) as mounted:
        yield mounted
