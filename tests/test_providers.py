"""Providers (issue 14 item 2): OpenAI, Azure OpenAI and OpenAI-compatible servers (vLLM, llama.cpp, LM Studio,
Ollama), each against a real loopback server that speaks its shape: paths, key headers, error bodies and the
response_format it takes (found per endpoint and remembered). Also ``llm.test_connection``."""
from __future__ import annotations

from typing import Any

import pytest

from taskweaver_lab.config import make_config
from taskweaver_lab.llm import LLM, ContextTooLong, OneCall, UserChoices, test_connection
from taskweaver_lab.steps import TaskWeaverLabError
from taskweaver_lab.testing import ScriptedLLMServer

from conftest import API_KEY

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}
COMPATIBLE = ("openai", "vllm", "llamacpp", "lmstudio", "ollama")


def openai_llm(server: ScriptedLLMServer, **extra: Any) -> LLM:
    return LLM(make_config({"base_url": server.base_url, "api_key": API_KEY, "planner_model": "planner", **extra}))


def azure_llm(server: ScriptedLLMServer, **extra: Any) -> LLM:
    config = {"azure_endpoint": server.root_url, "api_key": API_KEY, "planner_model": "plan-deployment",
              "code_generator_model": "code-deployment", **extra}
    return LLM(make_config(config))


def formats_sent(server: ScriptedLLMServer) -> list[str | None]:
    return [(r.get("response_format") or {}).get("type") for r in server.requests]


# --- Azure OpenAI ----------------------------------------------------------------------------------
def test_azure_uses_its_path_api_version_and_api_key_header_per_role_deployment() -> None:
    script = {"plan-deployment": ['{"a": 1}'], "code-deployment": ["print(1)"]}
    with ScriptedLLMServer(script, flavor="azure", api_key=API_KEY) as server:
        llm = azure_llm(server)
        assert llm.complete("planner", MESSAGES, SCHEMA).text == '{"a": 1}'
        assert llm.complete("code_generator", MESSAGES).text == "print(1)"
    assert server.paths == ["/openai/deployments/plan-deployment/chat/completions?api-version=2024-10-21",
                            "/openai/deployments/code-deployment/chat/completions?api-version=2024-10-21"]
    assert all(h.get("api-key") == API_KEY and "authorization" not in h for h in server.headers)
    assert formats_sent(server) == ["json_schema", None]  # Azure takes structured outputs


def test_azure_api_version_and_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY)
    with ScriptedLLMServer({"plan-deployment": ["ok"]}, flavor="azure", api_key=API_KEY) as server:
        llm = LLM(make_config({"azure_endpoint": server.root_url, "azure_api_version": "2025-01-01-preview",
                               "planner_model": "plan-deployment"}))
        assert llm.complete("planner", MESSAGES).text == "ok"
    assert server.paths[0].endswith("?api-version=2025-01-01-preview")


def test_azure_errors_say_what_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedLLMServer({"plan-deployment": ["never"]}, flavor="azure", api_key=API_KEY) as server:
        with pytest.raises(TaskWeaverLabError, match=r"rejected the API key \(HTTP 401\). Check AZURE_OPENAI_API_KEY"):
            azure_llm(server, api_key="sk-wrong-key-0000").complete("planner", MESSAGES)
        with pytest.raises(TaskWeaverLabError, match="has no deployment 'gpt-nope' .*The API deployment for this "
                                                     "resource does not exist"):
            azure_llm(server, planner_model="gpt-nope").complete("planner", MESSAGES)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    with pytest.raises(TaskWeaverLabError, match="Azure OpenAI needs an API key: set AZURE_OPENAI_API_KEY"):
        LLM(make_config({"azure_endpoint": "http://127.0.0.1:9"})).complete("planner", MESSAGES)


def test_azure_content_filter_is_named_and_not_taken_for_a_format_problem() -> None:
    blocked = {"status": 400, "code": "content_filter", "content": "The response was filtered due to the prompt "
               "triggering Azure OpenAI's content management policy."}
    with ScriptedLLMServer({"plan-deployment": [blocked]}, flavor="azure", api_key=API_KEY) as server:
        with pytest.raises(TaskWeaverLabError, match="The provider's content filter blocked this request .*Rephrase"):
            azure_llm(server).complete("planner", MESSAGES, SCHEMA)
    assert formats_sent(server) == ["json_schema"]


def test_azure_context_length_error() -> None:
    with ScriptedLLMServer({"plan-deployment": []}, flavor="azure", api_key=API_KEY, context_chars=400) as server:
        with pytest.raises(ContextTooLong, match="too long for the model's context .*maximum context length is 100"):
            azure_llm(server).complete("planner", [{"role": "user", "content": "y" * 1000}], SCHEMA)


# --- OpenAI and OpenAI-compatible servers -----------------------------------------------------------
@pytest.mark.parametrize("flavor", COMPATIBLE)
def test_the_bearer_key_goes_to_the_v1_path(flavor: str) -> None:
    with ScriptedLLMServer({"planner": ["hello"]}, flavor=flavor, api_key=API_KEY) as server:
        assert openai_llm(server).complete("planner", MESSAGES).text == "hello"
        with pytest.raises(TaskWeaverLabError, match=r"rejected the API key \(HTTP 401\). Check OPENAI_API_KEY"):
            openai_llm(server, api_key="sk-wrong-key-0000").complete("planner", MESSAGES)
    assert server.paths[0] == "/v1/chat/completions" and server.authorizations[0] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("flavor", COMPATIBLE)
def test_each_servers_error_body_is_read(flavor: str) -> None:
    """OpenAI/llama.cpp/Ollama nest the message, vLLM puts it at the top, LM Studio sends a bare string."""
    with ScriptedLLMServer(flavor=flavor) as server:
        server.add("planner", {"status": 400, "content": "temperature must be at most 2"})
        with pytest.raises(TaskWeaverLabError, match=r"refused the request \(model planner\): temperature must be at most 2$"):
            openai_llm(server).complete("planner", MESSAGES)
        server.add("planner", {"status": 503, "content": "model is loading"})
        with pytest.raises(TaskWeaverLabError, match=r"kept failing \(HTTP 503, model planner\) after 0 retries: model is loading"):
            openai_llm(server, llm_retries=0).complete("planner", MESSAGES)


@pytest.mark.parametrize("flavor", COMPATIBLE)
def test_each_servers_context_length_error_is_recognised(flavor: str) -> None:
    with ScriptedLLMServer({"planner": ['{"a": 3}']}, flavor=flavor, context_chars=400) as server:
        llm = openai_llm(server)
        with pytest.raises(ContextTooLong, match="The conversation is too long for the model's context"):
            llm.complete("planner", [{"role": "user", "content": "z" * 1000}], SCHEMA)
        assert llm.complete("planner", MESSAGES, SCHEMA).text == '{"a": 3}'
    assert formats_sent(server) == ["json_schema", "json_schema"]


@pytest.mark.parametrize(("formats", "first", "later"), [
    (("json_schema", "json_object"), ["json_schema"], "json_schema"),   # OpenAI, vLLM, llama.cpp, Ollama
    (("json_schema",), ["json_schema"], "json_schema"),                 # LM Studio: json_schema only
    (("json_object",), ["json_schema", "json_object"], "json_object"),  # JSON mode only
    ((), ["json_schema", "json_object", None], None),                   # no response_format at all
])
def test_response_format_is_found_per_endpoint_and_remembered(formats: tuple[str, ...], first: list[Any],
                                                               later: str | None) -> None:
    with ScriptedLLMServer({"planner": ['{"a": 1}', '{"a": 2}']}, formats=formats) as server:
        llm = openai_llm(server)
        assert llm.complete("planner", MESSAGES, SCHEMA).text == '{"a": 1}'
        assert llm.complete("planner", MESSAGES, SCHEMA).text == '{"a": 2}'
    assert formats_sent(server) == first + [later]


def test_what_one_endpoint_takes_is_not_assumed_of_another() -> None:
    script = {"planner": ['{"a": 1}', '{"a": 2}']}
    with ScriptedLLMServer(script, formats=("json_object",)) as plain, ScriptedLLMServer(script) as own:
        llm = openai_llm(plain)
        llm.complete("planner", MESSAGES, SCHEMA)
        llm.complete("planner", MESSAGES, SCHEMA, OneCall(choices=UserChoices(base_url=own.base_url)))
        llm.complete("planner", MESSAGES, SCHEMA)
    assert formats_sent(plain) == ["json_schema", "json_object", "json_object"]
    assert formats_sent(own) == ["json_schema"] and own.authorizations == ["Bearer not-needed"]  # no server key there


def test_an_endpoint_that_refuses_every_form_keeps_json_schema_for_later() -> None:
    """A 400 that no response_format cures says so, and does not teach the client that json_schema fails."""
    with ScriptedLLMServer() as server:
        server.add("planner", *[{"status": 400, "content": "messages: invalid role"}] * 3, '{"a": 5}')
        llm = openai_llm(server)
        with pytest.raises(TaskWeaverLabError, match="refused the request .*invalid role"):
            llm.complete("planner", MESSAGES, SCHEMA)
        assert llm.complete("planner", MESSAGES, SCHEMA).text == '{"a": 5}'
    assert formats_sent(server) == ["json_schema", "json_object", None, "json_schema"]


# --- test_connection --------------------------------------------------------------------------------
def test_connection_reports_models_and_json_mode() -> None:
    with ScriptedLLMServer({"planner": ['{"ok": true}'], "coder": []}, formats=("json_object",)) as server:
        result = test_connection(openai_llm(server).config)
    assert result == {"ok": True, "endpoint": server.base_url, "models": ["coder", "planner"], "models_error": "",
                      "json_mode": "json_object", "error": ""}


def test_connection_to_azure_and_to_a_dead_endpoint() -> None:
    with ScriptedLLMServer({"plan-deployment": ['{"ok": true}']}, flavor="azure", api_key=API_KEY) as server:
        result = test_connection(azure_llm(server).config)
    assert result["ok"] and result["json_mode"] == "json_schema" and result["endpoint"] == server.root_url
    dead = test_connection(make_config({"base_url": "http://127.0.0.1:9/v1", "api_key": API_KEY, "llm_retries": 0}))
    assert not dead["ok"] and dead["error"].startswith("Cannot get a reply from the LLM endpoint http://127.0.0.1:9/v1")
    assert dead["models_error"] and API_KEY not in str(dead)


def test_an_azure_resource_alone_counts_as_a_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's status and its turn check use this: a key only in AZURE_OPENAI_API_KEY is not 'not configured'."""
    from taskweaver_lab.config import make_config
    from taskweaver_lab.steps import TaskWeaverLabError

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TaskWeaverLabError, match="No LLM endpoint is configured"):
        make_config({}).check_endpoint()
    azure = make_config({"azure_endpoint": "https://example.openai.azure.com"})
    assert azure.endpoint_configured
    azure.check_endpoint()
