"""RTC on (jupyter-collaboration): the server inserts cells into the live shared notebook."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskweaver_lab.testing import code_reply, plan_reply

from server_support import (NS, as_json, code_cell, kernel_eval, make_notebook, open_notebook_kernel, post, read_until,
                            server_config, signed, started, turn_ended, wait_for_file)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(llm_server: Any, tmp_path: Path) -> dict[str, Any]:
    config = server_config(llm_server.base_url, {"jupyter_server_ydoc": True, "jupyter_server_fileid": True})
    config["YDocExtension"] = {"document_save_delay": 0.2}
    config["BaseFileIdManager"] = {"db_path": str(tmp_path / "file_id.db")}
    config["SQLiteYStore"] = {"db_path": str(tmp_path / "ystore.db")}
    return config


async def shared_cells(ext: Any, path: str) -> list[dict[str, Any]]:
    doc = await ext.ydoc().get_document(path=path, content_type="notebook", file_format="json", copy=True, create=False)
    return doc.get()["cells"]


async def test_cells_go_into_the_live_document_below_an_anchor(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                               jp_root_dir: Path, llm_server: Any) -> None:
    ext = await started(jp_serverapp)
    assert as_json(await jp_fetch(NS, "status"))["rtc"] is True
    cells = [code_cell("x = 1", "first"), code_cell("print('last')", "last")]
    notebook = make_notebook(jp_root_dir, cells=cells)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    # The user imported matplotlib first (a fresh HOME builds the font cache by walking system font
    # folders, which the runtime guard refuses inside agent code).
    await kernel_eval(jp_serverapp, kernel_id, "x = 1\nimport matplotlib.pyplot")  # the user ran the first cell
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    llm_server.add("planner", plan_reply("Plot a line."), plan_reply("Plotted.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("import matplotlib.pyplot as plt\n"
                                       "plt.plot([1, 2, 3])\nplt.show()\nprint('plotted')"))
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "plot", "record": "frontend"}
    accepted = as_json(await post(jp_fetch, "turns", body=body))
    assert accepted["record"] == "rtc"  # RTC wins: the frontend must not insert as well
    envelopes = await read_until(ws, turn_ended)
    assert envelopes[-1]["event"]["state"] == "finished", envelopes[-1]
    assert not any(e["event"]["insert"] for e in envelopes if e["event"]["kind"] == "cell")

    live = await shared_cells(ext, "nb.ipynb")
    assert [c["id"] for c in live[:2]] == ["first", "last"]  # a sidebar turn appends
    generated = next(c for c in live if "plt.plot" in c["source"])
    assert generated["metadata"]["taskweaver_lab"]["session"] == accepted["session_id"]
    assert any(o["output_type"] == "stream" and "plotted" in o["text"] for o in generated["outputs"]), generated["outputs"]
    assert any("image/png" in o.get("data", {}) for o in generated["outputs"])
    saved = await wait_for_file(notebook, lambda nb: any("plt.plot" in c.source for c in nb.cells))  # autosave
    assert saved.cells[-1].metadata["taskweaver_lab"]["kind"] == "answer"
    ws.close()

    # A magic turn (kernel-signed) anchored at the first cell: its cells go between "first" and "last".
    llm_server.add("planner", plan_reply("Set y."), plan_reply("y is set.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("y = x + 1\nprint(y)"))
    key = jp_serverapp.kernel_manager.get_kernel(kernel_id).session.key
    body = json.dumps({"message": "set y", "cell_id": "first"})
    url_path = f"{jp_serverapp.base_url}{NS}/kernel/turns"
    response = await jp_fetch(NS, "kernel", "turns", method="POST", body=body,
                              headers={"Authorization": "", **signed(key, kernel_id, "POST", url_path, body)})
    turn = as_json(response)
    assert turn["record"] == "rtc" and turn["session_id"] == accepted["session_id"]  # one session per notebook
    events_path = f"{jp_serverapp.base_url}{NS}/kernel/turns/{turn['turn_id']}/events"
    page: dict[str, Any] = {"done": False, "next": 0}
    while not page["done"]:
        page = as_json(await jp_fetch(NS, "kernel", "turns", turn["turn_id"], "events", params={"after": page["next"]},
                                      headers={"Authorization": "", **signed(key, kernel_id, "GET", events_path)}))
    live = await shared_cells(ext, "nb.ipynb")
    ids = [c["id"] for c in live]
    below = live[ids.index("first") + 1:ids.index("last")]
    assert [c["metadata"]["taskweaver_lab"].get("kind", "code") for c in below] == ["user", "plan", "code", "answer"]
    assert below[2]["source"].strip() == "y = x + 1\nprint(y)", below[2]
    assert below[2]["outputs"][0].get("text") == "2\n", below[2]["outputs"]
