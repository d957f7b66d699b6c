"""One real stack per test session: PostgreSQL, Redis, the sandbox and a Fides webserver.

If a part cannot start, the fixture raises and every end-to-end test errors with the
reason: these tests never skip.
"""

from typing import Iterator

import pytest

from fides_movable_ink.devstack.stack import Stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with Stack(processing_time=0.5, poll_interval_seconds=0.3, max_wait_seconds=30) as running:
        yield running


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    """The stack with the sandbox's faults and records cleared."""
    assert stack.sandbox is not None
    stack.sandbox.reset()
    return stack


@pytest.fixture(scope="session")
def worker_stack() -> Iterator[Stack]:
    """Fides as production runs it: webserver plus two Celery workers (eager mode off, Redis broker).

    Interrupted tasks are looked for every 10 s instead of every 300 s, so the test of a
    killed worker does not wait five minutes for Fides' recovery.
    """
    with Stack(
        workers=2,
        processing_time=0.5,
        poll_interval_seconds=0.3,
        max_wait_seconds=60,
        fides_env={"FIDES__EXECUTION__INTERRUPTED_TASK_REQUEUE_INTERVAL": "10"},
    ) as running:
        yield running
