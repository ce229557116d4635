"""The wire contract between the server (Python) and the sidebar (TypeScript, src/types.ts).

One real example of every message the sidebar receives is kept in ``tests/golden/<name>.json``:
every ``Step`` subclass (built here and serialised by its own ``to_json``), the server's ``cell`` and
``approval`` events (built by ``EventRecorder`` / ``ApprovalGate`` with a real callback), and what only a
running server produces: the websocket envelope, ``turn`` events, the accepted-turn reply, the session
snapshot and the status (taken from a real turn through the real server, scripted LLM).

From the golden files this test also writes ``src/__tests__/wire.golden.ts`` (one typed TypeScript
literal per file); ``jlpm test`` compiles it, so TypeScript fails when Python sends a field the
interface lacks (excess property) or the interface requires one Python does not send.

    UPDATE_GOLDEN=1 python -m pytest tests/test_wire_contract.py   # after an intended wire change
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from nbformat.v4 import new_output

from taskweaver_lab.notebook import cell_for
from taskweaver_lab.server.turns import ApprovalGate, EventRecorder
from taskweaver_lab.steps import (Answer, Draft, Execution, FigureSource, LLMCall, Notice, Plan, Step, TextDelta,
                                  UserMessage, Verdict, Violation)

from server_support import (NS, as_json, make_notebook, open_notebook_kernel, post, read_until, script_one_step,
                            server_config, started, turn_ended)

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
TS_FILE = REPO / "src" / "__tests__" / "wire.golden.ts"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
Json = dict[str, Any]

# Golden file stem -> the TypeScript type (src/types.ts) it must satisfy.
TS_TYPES = {
    "user": "IUserStep", "plan": "IPlanStep", "draft": "IDraftStep", "verdict": "IVerdictStep",
    "execution": "IExecutionStep", "answer": "IAnswerStep", "llm_call": "ILLMCallStep", "delta": "IDeltaStep",
    "notice": "INoticeStep", "cell": "ICellEvent", "cell.anchored": "ICellEvent", "approval": "IApprovalEvent",
    "turn.started": "ITurnStartedEvent", "turn.finished": "ITurnEndedEvent", "envelope": "IEventEnvelope",
    "accepted": "ITurnAccepted", "snapshot": "ISessionSnapshot", "status": "IStatus",
}
# Values a running server makes up; the goldens hold these stand-ins so rewriting them causes no churn.
TURN_ID, SESSION_ID = "5e1f0c2a9b7d", "0d6c2f4e8a1b4c3d"
# Keys whose values are not ours to describe: nbformat documents, counters keyed by role name.
OPAQUE = {"cell", "outputs", "by_role"}
CODE = "import pandas as pd\nsales = pd.read_csv('sales.csv')\nsales.groupby('month')['total'].sum()"


# --- examples built with the real classes ---------------------------------------------------------
def step_examples() -> dict[str, Step]:
    """One realistic instance of every Step the agent emits, every field set."""
    execution = Execution(
        ok=True, code=CODE,
        outputs=(new_output("stream", name="stdout", text="12 rows\n"),
                 new_output("execute_result", data={"text/plain": "month\n1    120.5"}, execution_count=3)),
        summary="month\n1    120.5", error="", artifacts=("monthly.png",), execution_count=3, duration_s=0.42,
        attempt=1, step=1, round=1, interrupted=False, verified=True)
    return {step.kind: step for step in (
        UserMessage("Plot monthly sales from sales.csv", 1),
        Plan("Load sales.csv and sum the totals per month.", "CodeInterpreter",
             plan=("Load sales.csv and sum per month", "Report the best month"),
             init_plan=("Load sales.csv", "Sum per month <interactively depends on 1>", "Report the best month"),
             current_step=1, stop="InProcess", reasoning="The data is a CSV file in the workspace.", round=1),
        Draft("Read the CSV with pandas and group by month.", CODE, "python", attempt=2, step=1, round=1),
        Verdict(False, (Violation("shell", 3, "Shell commands are not allowed."),), checked_source=CODE, attempt=1),
        execution,
        Answer("March was the best month (120.5, up from 98 in February; 14 % not computed).", is_question=False,
               stop="Completed", round=1,
               sources=(FigureSource("120.5", "cell", round=1, step=1, attempt=1, execution_count=3),
                        FigureSource("98", "user", round=1)),
               ungrounded=("14 %",)),
        LLMCall("planner", "gpt-4o-mini", prompt_tokens=812, completion_tokens=64, latency_s=1.25,
                cached_tokens=512, retries=1),
        TextDelta("code_generator", "sales.groupby("),
        Notice("warning", "The LLM endpoint was slow; retrying (1 of 3)."),
    )}


def all_step_kinds() -> set[str]:
    """Every Step subclass, however deep: a new one must get an example (and a TypeScript interface)."""
    found, todo = set(), list(Step.__subclasses__())
    while todo:
        cls = todo.pop()
        found.add(cls.kind)
        todo.extend(cls.__subclasses__())
    return found


def cell_events(anchor: str | None) -> list[Json]:
    """What the sidebar gets when it must insert cells itself (record mode "frontend")."""
    events: list[Json] = []
    recorder = EventRecorder(None, events.append, anchor)
    for number, step in enumerate((step_examples()["execution"], step_examples()["answer"]), 1):
        cell = cell_for(step, SESSION_ID)
        assert cell is not None
        cell["id"] = f"tw-cell-{number}"  # nbformat makes random ids; the golden needs a stable one
        recorder.add_cell(cell)
    return events


def approval_event() -> Json:
    """The event ApprovalGate publishes while the turn's worker waits for Run / Edit / Skip."""
    published: list[Json] = []
    gate = ApprovalGate(published.append)
    examples = step_examples()
    decision: list[Any] = []
    worker = threading.Thread(target=lambda: decision.append(gate.wait(examples["draft"], examples["verdict"])))
    worker.start()
    deadline = time.monotonic() + 5
    while not gate.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.decide("run")
    worker.join(5)
    assert decision == [("run", "")] and len(published) == 1
    return published[0]


def built_examples() -> dict[str, Json]:
    examples = {kind: step.to_json() for kind, step in step_examples().items()}
    examples["cell"] = cell_events(None)[0]
    examples["cell.anchored"] = cell_events("magic-cell")[1]  # the second cell goes below the first
    examples["approval"] = approval_event()
    return examples


# --- shapes -------------------------------------------------------------------------------------
def fields(value: Any, prefix: str = "") -> set[str]:
    """Dotted key paths of ``value`` (``a.b``, ``list[].c``); OPAQUE keys are listed, not entered."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            if key not in OPAQUE:
                paths |= fields(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= fields(item, prefix + "[]")
    return paths


def read_golden(name: str) -> Json | None:
    path = GOLDEN / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_golden(name: str, value: Json) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / f"{name}.json").write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def ts_literal_file() -> str:
    """``src/__tests__/wire.golden.ts`` as generated from the golden files."""
    names = sorted(TS_TYPES)
    header = [
        "// GENERATED by tests/test_wire_contract.py from tests/golden/*.json: do not edit. After a wire change run",
        "// `UPDATE_GOLDEN=1 python -m pytest tests/test_wire_contract.py`. `jlpm test` type-checks these literals",
        "// against src/types.ts (a field Python sends that TypeScript lacks is an excess-property error).",
        f"import type {{ {', '.join(sorted(set(TS_TYPES.values())))} }} from '../types';",
        "",
    ]
    body = []
    for name in names:
        value = read_golden(name)
        assert value is not None, f"tests/golden/{name}.json is missing: run with UPDATE_GOLDEN=1"
        literal = json.dumps(value, indent=2, ensure_ascii=False)
        body.append(f"export const {name.replace('.', '_')}: {TS_TYPES[name]} = {literal};\n")
    return "\n".join(header + body)


# --- the tests ----------------------------------------------------------------------------------
def test_every_step_kind_has_an_example_and_a_typescript_type() -> None:
    kinds = all_step_kinds()
    assert kinds == set(step_examples()), "add the new Step to step_examples() and to TS_TYPES"
    assert kinds <= set(TS_TYPES)


@pytest.mark.parametrize("name", sorted(set(TS_TYPES) - {"turn.started", "turn.finished", "envelope", "accepted",
                                                         "snapshot", "status"}))
def test_built_events_match_their_golden_files(name: str) -> None:
    actual = built_examples()[name]
    if UPDATE:
        write_golden(name, actual)
    assert actual == read_golden(name), f"{name} changed on the wire: update src/types.ts, then UPDATE_GOLDEN=1"


# --- what only a running server produces ------------------------------------------------------
@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url)


def scrub(value: Any, stand_ins: dict[str, str]) -> Any:
    """``value`` with the run's made-up ids swapped for the goldens' fixed stand-ins."""
    if isinstance(value, dict):
        return {k: scrub(v, stand_ins) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, stand_ins) for v in value]
    return stand_ins.get(value, value) if isinstance(value, str) else value


def check_shape(name: str, actual: Json) -> None:
    """Same fields as the golden (values differ run to run); UPDATE_GOLDEN rewrites it only when they differ."""
    golden = read_golden(name)
    if UPDATE and (golden is None or fields(golden) != fields(actual)):
        write_golden(name, actual)
        golden = actual
    assert golden is not None, f"tests/golden/{name}.json is missing: run with UPDATE_GOLDEN=1"
    assert fields(actual) == fields(golden), f"{name} changed on the wire: update src/types.ts, then UPDATE_GOLDEN=1"


def check_event_kinds(events: list[Json]) -> None:
    """Each event a real turn sent has the top-level fields of its golden example."""
    for event in events:
        name = event["kind"] if event["kind"] != "turn" else f"turn.{event['state']}"
        if event["kind"] == "cell" and "after_cell_id" in event:
            name = "cell.anchored"
        golden = read_golden(name)
        assert golden is not None, f"no golden example of {name!r} events: add one (and its TypeScript type)"
        assert set(event) == set(golden), f"{name}: sent {sorted(event)}, golden {sorted(golden)}"


async def test_a_real_turn_matches_the_golden_files(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                    jp_root_dir: Path, llm_server: Any) -> None:
    """Approval mode with the notebook open in the sidebar: every server-made message kind in one turn."""
    await started(jp_serverapp)
    make_notebook(jp_root_dir)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    script_one_step(llm_server, "total = 40 + 2\nprint(total)", "The total is 42.")
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "add 40 and 2", "approval": "approve",
            "record": "frontend"}
    response = await post(jp_fetch, "turns", body=body)
    assert response.code == 202, response.body
    accepted = as_json(response)
    stand_ins = {accepted["turn_id"]: TURN_ID, accepted["session_id"]: SESSION_ID}
    envelopes = await read_until(ws, lambda e: e["event"]["kind"] == "approval")
    await post(jp_fetch, "turns", accepted["turn_id"], "approve", body={"action": "run"})
    envelopes += await read_until(ws, turn_ended)
    ws.close()
    events = [e["event"] for e in envelopes]
    assert events[-1]["state"] == "finished", events[-1]
    check_shape("turn.started", events[0])
    check_shape("turn.finished", events[-1])
    check_event_kinds(events)

    snapshot = as_json(await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}))
    check_event_kinds(snapshot["events"])
    check_shape("accepted", scrub(accepted, stand_ins))
    check_shape("envelope", scrub(envelopes[0], stand_ins))
    check_shape("snapshot", scrub(snapshot, stand_ins))
    check_shape("status", as_json(await jp_fetch(NS, "status")))


# --- run after the goldens above are (re)written ----------------------------------------------
def test_every_golden_file_is_known() -> None:
    """A golden file nobody produces any more would keep a dead TypeScript type alive."""
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(TS_TYPES)


def test_typescript_literals_are_generated_from_the_golden_files() -> None:
    expected = ts_literal_file()
    if UPDATE:
        TS_FILE.parent.mkdir(parents=True, exist_ok=True)
        TS_FILE.write_text(expected)
    assert TS_FILE.read_text() == expected, "src/__tests__/wire.golden.ts is stale: run with UPDATE_GOLDEN=1"


def test_fields_sees_added_and_removed_keys() -> None:
    """The shape comparison itself: nested keys count, opaque payloads do not."""
    base = {"kind": "turn", "usage": {"calls": 1}, "cell": {"source": "x"}}
    assert fields(base) == {"kind", "usage", "usage.calls", "cell"}
    assert fields({**base, "usage": {"calls": 1, "by_role": {}}}) != fields(base)
    assert fields({**base, "cell": {"source": "y", "id": "z"}}) == fields(base)
