"""Per-user settings (Settings Editor > TaskWeaver) sent with a sidebar turn: model names and an own endpoint.

A real pytest-jupyter server, real kernels and two real scripted loopback LLM servers: the server's own and
one the user points their turns at (which must never receive the server's API key)."""
from __future__ import annotations

from typing import Any

import pytest

from taskweaver_lab.testing import ScriptedLLMServer

from conftest import API_KEY
from server_support import (NS, as_json, make_notebook, open_notebook_kernel, post, read_until, script_one_step,
                            server_config, started, turn_ended)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url)


async def run_turn(jp_fetch: Any, jp_ws_fetch: Any, kernel_id: str, **extra: Any) -> list[dict[str, Any]]:
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    try:
        response = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id,
                                                       "message": "compute", **extra})
        assert response.code == 202, response.body
        envelopes = await read_until(ws, turn_ended)
    finally:
        ws.close()
    assert envelopes[-1]["event"]["state"] == "finished", envelopes[-1]
    return envelopes


def models_called(envelopes: list[dict[str, Any]]) -> list[str]:
    return [e["event"]["model"] for e in envelopes if e["event"]["kind"] == "llm_call"]


async def test_user_model_names_apply_to_their_turn_only(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                         jp_root_dir: Any, llm_server: ScriptedLLMServer) -> None:
    await started(jp_serverapp)
    make_notebook(jp_root_dir)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    script_one_step(llm_server, "x = 6", "Six.", planner="my-planner", coder="my-coder")
    envelopes = await run_turn(jp_fetch, jp_ws_fetch, kernel_id,
                               overrides={"planner_model": "my-planner", "code_generator_model": "my-coder"})
    assert models_called(envelopes) == ["my-planner", "my-coder", "my-planner"]
    assert [r["model"] for r in llm_server.requests] == ["my-planner", "my-coder", "my-planner"]
    assert all(auth == f"Bearer {API_KEY}" for auth in llm_server.authorizations)  # the server's own endpoint

    # The next turn without settings uses the server's configuration again.
    script_one_step(llm_server, "y = 7", "Seven.")
    envelopes = await run_turn(jp_fetch, jp_ws_fetch, kernel_id)
    assert models_called(envelopes) == ["planner", "coder", "planner"]


async def test_own_endpoint_gets_the_turn_but_never_the_server_key(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Any, llm_server: ScriptedLLMServer) -> None:
    ext = await started(jp_serverapp)
    make_notebook(jp_root_dir)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    with ScriptedLLMServer() as own:
        script_one_step(own, "z = 8", "Eight, from your own endpoint.")
        envelopes = await run_turn(jp_fetch, jp_ws_fetch, kernel_id, overrides={"base_url": own.base_url + "/"})
        assert envelopes[-2]["event"]["text"] == "Eight, from your own endpoint."
        assert len(own.requests) == 3 and llm_server.requests == []
        assert API_KEY not in "".join(own.authorizations)

        # With no endpoint on the server at all, the user's own one is enough to start...
        ext.config_section.base_url, ext.config_section.api_key = "", ""
        refused = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": "hi"})
        assert refused.code == 412 and "Settings Editor > TaskWeaver" in as_json(refused)["error"]
        script_one_step(own, "w = 9", "Nine.")
        await run_turn(jp_fetch, jp_ws_fetch, kernel_id, overrides={"base_url": own.base_url})
        assert len(own.requests) == 6


@pytest.mark.parametrize("overrides, allowed, status, words", [
    ({"planner_model": "gpt-5-huge"}, True, 403, "not offered on this server"),
    ({"base_url": "http://127.0.0.1:9/v1"}, False, 403, "does not let users pick their own LLM endpoint"),
    ({"base_url": "file:///etc/passwd"}, True, 400, "must be an http(s) URL"),
    ({"api_key": "sk-from-the-browser"}, True, 400, "may only hold"),
    ({"code_generator_model": "coder\n"}, True, 400, "short printable string"),
    ("planner", True, 400, "may only hold"),
])
async def test_settings_the_admin_does_not_allow_are_refused(
        jp_serverapp: Any, jp_fetch: Any, jp_root_dir: Any, llm_server: ScriptedLLMServer,
        overrides: Any, allowed: bool, status: int, words: str) -> None:
    ext = await started(jp_serverapp)
    ext.config_section.allowed_models = ["planner", "coder"]
    ext.config_section.allow_user_base_url = allowed
    make_notebook(jp_root_dir)
    response = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": "not-started-yet",
                                                   "message": "hi", "overrides": overrides})
    assert response.code == status and words in as_json(response)["error"], response.body
    assert llm_server.requests == []
    shown = as_json(await jp_fetch(NS, "status"))  # what the sidebar learns of these limits
    assert shown["allowed_models"] == ["planner", "coder"] and shown["user_base_url"] is allowed



async def test_a_magic_turn_uses_the_endpoint_the_user_saved_in_settings(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Any, llm_server: ScriptedLLMServer,
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """%%taskweaver turns come from the kernel, which never sees Settings > TaskWeaver: the server reads the saved
    settings file, and the admin's limits apply as for the sidebar."""
    import json

    from server_support import signed, start_turn, watched_notebook

    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    ext = await started(jp_serverapp)
    settings = tmp_path / "user-settings" / "taskweaver_lab" / "plugin.jupyterlab-settings"
    settings.parent.mkdir(parents=True)
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(tmp_path / "user-settings"))
    with ScriptedLLMServer() as own:
        settings.write_text(json.dumps({"baseUrl": own.base_url, "plannerModel": "", "approval": "auto"}))
        script_one_step(own, "v = 5", "Five, from your own endpoint.")
        await start_turn(jp_fetch, jp_serverapp, kernel_id, "compute", origin="magic")
        envelopes = await read_until(ws, turn_ended)
        assert envelopes[-2]["event"]["text"] == "Five, from your own endpoint."
        assert len(own.requests) == 3 and llm_server.requests == []
        assert API_KEY not in "".join(own.authorizations)

        ext.config_section.allow_user_base_url = False  # the admin's lock holds for magic turns too
        key = jp_serverapp.kernel_manager.get_kernel(kernel_id).session.key
        body = json.dumps({"message": "again", "cell_id": "none"})
        url_path = f"{jp_serverapp.base_url}{NS}/kernel/turns"
        refused = await jp_fetch(NS, "kernel", "turns", method="POST", body=body, raise_error=False,
                                 headers={"Authorization": "", **signed(key, kernel_id, "POST", url_path, body)})
        assert refused.code == 403 and "own LLM endpoint" in as_json(refused)["error"]
