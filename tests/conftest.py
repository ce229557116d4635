"""Shared fixtures: a real scripted OpenAI-compatible server on loopback and a workspace with sample data."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from taskweaver_lab.testing import ScriptedLLMServer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
API_KEY = "sk-test-5f2b8c1d9e4a7f3b6c0d8e2a1f4b7c9d"  # planted: must never reach kernels or notebooks


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    for name in ("anomaly.db", "sales.csv"):
        shutil.copy(REPO / "sample_data" / name, tmp_path / name)
    return tmp_path


def agent_config(server: ScriptedLLMServer, **extra: Any) -> dict[str, Any]:
    """Roles told apart by model name (A2): the scripted server keeps one reply queue per model."""
    return {"base_url": server.base_url, "api_key": API_KEY, "planner_model": "planner",
            "code_generator_model": "coder", **extra}
