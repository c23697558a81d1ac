"""End-to-end fixtures: stacks that live for a whole test module."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory, moto_endpoint):
    """Factory like ``make_stack``, but every stack it starts is stopped only when the module ends:
    ``module_stack(backend="local", workers=2, wait_for_consumers=True, **env)``."""
    with ExitStack() as stacks:

        def make(backend: str = "local", workers: int = 2, wait_for_consumers: bool = True, **env: str) -> Stack:
            return stacks.enter_context(
                running_stack(
                    tmp_path_factory.mktemp(f"stack-{backend}"),
                    backend=backend,
                    workers=workers,
                    s3_endpoint=moto_endpoint if backend == "s3" else None,
                    env_overrides=env,
                    wait_for_consumers=wait_for_consumers,
                )
            )

        yield make
