"""The conformance suite of licensor.testing, run by the third-party-style example backend."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from licensor.testing import BackendConformance

from tests.example_backend import ExamplePlugin


@pytest.fixture
def licensor_plugins() -> tuple[object, ...]:
    return (ExamplePlugin(),)


class TestExampleBackendConformance(BackendConformance):
    backend = "example"
    options: ClassVar[dict[str, Any]] = {"max_major_version": 3}
    invalid_options = ({"max_major_version": -1}, {"max_major_version": "3"}, {"seats_per_user": 2})
