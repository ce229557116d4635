"""The sidebar's "Test connection" (issue 14 item 2): ``POST taskweaver_lab/connection`` through a real
pytest-jupyter server against real scripted loopback LLM servers (the server's own and a user's own one)."""
from __future__ import annotations

from typing import Any

import pytest

from taskweaver_lab.testing import ScriptedLLMServer

from conftest import API_KEY
from server_support import NS, as_json, post, server_config, started

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url, llm_retries=0)


async def check(jp_fetch: Any, overrides: dict[str, Any] | None = None) -> Any:
    return await post(jp_fetch, "connection", body={"overrides": overrides} if overrides is not None else {})


async def test_a_working_endpoint_reports_its_models_and_json_mode(
        jp_serverapp: Any, jp_fetch: Any, llm_server: ScriptedLLMServer) -> None:
    await started(jp_serverapp)
    llm_server.formats = ("json_object",)  # this endpoint refuses json_schema: the check finds the rung that works
    llm_server.add("planner", '{"ok": true}')
    llm_server.add("coder")
    llm_server.add("other")
    response = await check(jp_fetch)
    assert response.code == 200, response.body
    result = as_json(response)
    assert result["ok"] and result["models"] == ["coder", "other", "planner"] and result["json_mode"] == "json_object"
    assert result["endpoint"] == llm_server.base_url
    assert result["summary"] == f"Connected to {llm_server.base_url}: 3 models, JSON mode works (json_object)."
    assert llm_server.authorizations and all(a == f"Bearer {API_KEY}" for a in llm_server.authorizations)
    assert API_KEY not in response.body.decode()


async def test_the_users_model_choice_is_what_gets_checked(
        jp_serverapp: Any, jp_fetch: Any, llm_server: ScriptedLLMServer) -> None:
    await started(jp_serverapp)
    llm_server.add("my-planner", '{"ok": true}')
    result = as_json(await check(jp_fetch, {"planner_model": "my-planner"}))
    assert result["ok"] and result["json_mode"] == "json_schema", result
    assert [r["model"] for r in llm_server.requests] == ["my-planner"]


async def test_a_dead_endpoint_gives_one_clear_sentence(jp_serverapp: Any, jp_fetch: Any) -> None:
    await started(jp_serverapp)
    response = await check(jp_fetch, {"base_url": "http://127.0.0.1:9/v1"})
    assert response.code == 200, response.body
    result = as_json(response)
    assert not result["ok"] and result["models"] == []
    assert result["summary"] == result["error"]
    assert result["summary"].startswith("Cannot get a reply from the LLM endpoint http://127.0.0.1:9/v1")
    assert "Traceback" not in result["summary"] and "\n" not in result["summary"]


async def test_the_server_key_never_reaches_a_users_own_endpoint(
        jp_serverapp: Any, jp_fetch: Any, llm_server: ScriptedLLMServer) -> None:
    await started(jp_serverapp)
    with ScriptedLLMServer({"planner": ['{"ok": true}']}) as own:
        result = as_json(await check(jp_fetch, {"base_url": own.base_url}))
        assert result["ok"] and result["endpoint"] == own.base_url and result["models"] == ["planner"], result
        assert own.authorizations and API_KEY not in "".join(own.authorizations)
    assert llm_server.requests == []


@pytest.mark.parametrize("overrides, allowed, status, words", [
    ({"planner_model": "gpt-5-huge"}, True, 403, "not offered on this server"),
    ({"base_url": "http://127.0.0.1:9/v1"}, False, 403, "does not let users pick their own LLM endpoint"),
    ({"base_url": "file:///etc/passwd"}, True, 400, "must be an http(s) URL"),
    ({"api_key": "sk-from-the-browser"}, True, 400, "may only hold"),
])
async def test_an_override_the_admin_forbids_is_refused(
        jp_serverapp: Any, jp_fetch: Any, llm_server: ScriptedLLMServer,
        overrides: dict[str, Any], allowed: bool, status: int, words: str) -> None:
    ext = await started(jp_serverapp)
    ext.config_section.allowed_models = ["planner", "coder"]
    ext.config_section.allow_user_base_url = allowed
    response = await check(jp_fetch, overrides)
    assert response.code == status and words in as_json(response)["error"], response.body
    assert llm_server.requests == []


async def test_no_endpoint_anywhere_says_how_to_configure_one(
        jp_serverapp: Any, jp_fetch: Any, llm_server: ScriptedLLMServer) -> None:
    ext = await started(jp_serverapp)
    ext.config_section.base_url, ext.config_section.api_key = "", ""
    response = await check(jp_fetch)
    assert response.code == 412 and "Settings Editor > TaskWeaver" in as_json(response)["error"], response.body


async def test_only_an_authenticated_user_may_test(jp_serverapp: Any, jp_fetch: Any, llm_server: ScriptedLLMServer) -> None:
    await started(jp_serverapp)
    response = await jp_fetch(NS, "connection", method="POST", body="{}", raise_error=False,
                              headers={"Authorization": "token wrong"})
    assert response.code in (401, 403)
    assert llm_server.requests == []
