"""Issue 12 item 16: a prompt the model's context cannot hold is asked once more with a shorter history,
through the real loop (real kernel, the scripted loopback server's context limit)."""
from __future__ import annotations

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

from conftest import agent_config


def test_a_context_length_error_is_answered_with_a_shorter_history(workspace) -> None:
    def script(server: ScriptedLLMServer, n: int) -> None:
        server.add("planner", plan_reply(f"Print {n} * 1000."), plan_reply(f"It is {n}000.", send_to="User", stop="Completed"))
        server.add("coder", code_reply(f"print({n} * 1000)"))

    notices: list[str] = []
    with ScriptedLLMServer() as server:
        with TaskWeaverApp(config=agent_config(server)).create_session(notebook=workspace / "long.ipynb") as session:
            for n in range(1, 6):
                script(server, n)
                session.chat(f"what is {n} times a thousand?")
            fifth = sum(len(m["content"]) for m in server.calls("planner")[-2]["messages"])
            server.context_chars = fifth  # as long as round 5's first call: round 6, one summary more, is too long
            script(server, 6)
            answer = session.chat("what is 6 times a thousand?", on_event=lambda s: notices.append(getattr(s, "text", "")))
    assert answer.text == "It is 6000." and not answer.ungrounded
    assert any("did not fit the model's context" in n for n in notices)
    # Round 6: each Planner call is refused in full (it logs), then goes through shortened.
    planner = [str(r["messages"]) for r in server.calls("planner")]
    assert len(planner) == 14
    assert all("Earlier round 5." in p for p in planner[10::2])
    assert all("Earlier round" not in p and "5 earlier rounds are in the notebook" in p for p in planner[11::2])
