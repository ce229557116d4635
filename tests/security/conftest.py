"""One real kernel with the guard, shared by the corpus tests (one kernel, many cells keeps it fast)."""
from __future__ import annotations

from typing import Iterator

import pytest

from taskweaver_lab.testing import ScriptedLLMServer
from taskweaver_lab.verifier import Policy

from .benign import SETUP, USER_NAMES
from .harness import AgentKernel, Canaries


@pytest.fixture(scope="module")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canaries]:
    found = Canaries(tmp_path_factory.mktemp("security"))
    yield found
    found.close()


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLMServer]:
    """The scripted endpoint of the tests that go through the whole loop (one per module, like its session)."""
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def kernel(canaries: Canaries) -> Iterator[AgentKernel]:
    agent_kernel = AgentKernel(canaries.workspace)
    installed = agent_kernel.install_guard(canaries.workspace)
    assert not installed.error, installed
    setup = agent_kernel.run(SETUP, agent=False)      # the user's own cell: creates sales/sensors/customers
    assert not setup.error, setup
    yield agent_kernel
    agent_kernel.close()


@pytest.fixture(scope="module")
def policy(canaries: Canaries) -> Policy:
    return Policy(workspace=str(canaries.workspace), user_names=USER_NAMES)
