"""Issue 15 item 3: the sidebar's "Save as example" endpoint through a real server, kernel and scripted LLM:
the round's TaskWeaver example YAMLs land next to the notebook and load back as examples."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from taskweaver_lab.examples import load_examples
from server_support import as_json, post, read_until, script_one_step, server_config, started, turn_ended, watched_notebook

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url)


async def test_save_a_round_as_example(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path,
                                       llm_server: Any) -> None:
    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    for message, code in (("compute 6*7", "answer = 6 * 7\nprint(answer)"), ("add one", "print(answer + 1)")):
        script_one_step(llm_server, code, f"Done: {message}.")
        assert (await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": message})).code == 202
        assert (await read_until(ws, turn_ended, timeout=120))[-1]["event"]["state"] == "finished"
    ws.close()

    response = await post(jp_fetch, "examples", body={"path": "nb.ipynb", "message": "compute 6*7"})
    assert response.code == 200, response.body
    saved = as_json(response)
    assert saved["saved"] == ["taskweaver_examples/nb-planner-1.yaml", "taskweaver_examples/nb-code_generator-1.yaml"]
    folder = jp_root_dir / "taskweaver_examples"
    code_yaml = (folder / "nb-code_generator-1.yaml").read_text()
    assert "answer = 6 * 7" in code_yaml and "answer + 1" not in code_yaml  # that round, not the last one
    examples, errors = load_examples([str(folder)])
    assert errors == [] and sorted(e.role for e in examples) == ["code_generator", "planner"]

    # Saving again never overwrites; after a server restart the round comes from the notebook's record.
    from taskweaver_lab.server.turns import TurnManager

    ext = await started(jp_serverapp)
    ext.turns = TurnManager(ext.core, jp_serverapp, asyncio.get_running_loop(), ext.ydoc)
    again = as_json(await post(jp_fetch, "examples", body={"path": "nb.ipynb", "message": "compute 6*7"}))
    assert again["saved"] == ["taskweaver_examples/nb-planner-2.yaml", "taskweaver_examples/nb-code_generator-2.yaml"]
    assert "answer = 6 * 7" in (folder / "nb-code_generator-2.yaml").read_text()
    assert "user_query: compute 6*7" in (folder / "nb-planner-2.yaml").read_text()

    unknown = await post(jp_fetch, "examples", body={"path": "nb.ipynb", "message": "never asked"})
    assert unknown.code == 404 and "not in this notebook's record" in as_json(unknown)["error"]
    with pytest.raises(HTTPClientError) as refused:  # the server's token is required, like every sidebar endpoint
        await jp_fetch("taskweaver_lab", "examples", method="POST", body="{}", headers={"Authorization": ""})
    assert refused.value.code in (401, 403)
