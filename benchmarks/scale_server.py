"""The server goals of issue 13 for ``benchmarks/scale.py --server``: 20 concurrent sessions x 10 turns.

A real ``jupyter server`` subprocess with the extension, 20 notebooks each with its own kernel, the scripted
zero-latency loopback LLM (each session its own model names, so their scripts never mix), each turn a trivial
cell (``print(n)``). Each client posts a turn as the sidebar does and waits for its "finished" on the events
websocket, ten times in a row; the 20 clients run at once. Measured against baselines of the same run:

- errors (a refused POST or a failed turn) over the 200 turns: the goal is none;
- turn time p95 (post to "finished": the framework's overhead, since the LLM answers at once and the cell is
  trivial; each session's first turn, which also sets its kernel up, is left out) against the same turns of
  one session alone, before the crowd;
- an authenticated ``GET status`` p95 while the crowd runs, against the idle server;
- the server's resident memory growth per 100 rounds.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

SESSIONS = int(os.environ.get("SCALE_SESSIONS", "20"))  # smaller for a quick look
TURNS = int(os.environ.get("SCALE_TURNS", "10"))
Row = tuple[str, str, float, float, bool, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A jupyter server subprocess with the extension, talking to ``llm``."""

    def __init__(self, root: Path, llm: ScriptedLLMServer) -> None:
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "OPENAI_API_KEY": "sk-scale-benchmark"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--port={self.port}", "--ip=127.0.0.1",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}", "--allow-root",
             "--ServerApp.jpserver_extensions=taskweaver_lab=True", f"--TaskWeaverLab.base_url={llm.base_url}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
        self.client = AsyncHTTPClient(max_clients=64)

    async def call(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        request = HTTPRequest(self.url + path, method=method, body=None if body is None else json.dumps(body),
                              headers={"Authorization": f"token {self.token}"}, request_timeout=600)
        response = await self.client.fetch(request, raise_error=False)
        return response.code, json.loads(response.body or b"{}") if response.body else {}

    async def ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if (await self.call("taskweaver_lab/status"))[0] == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.5)
        raise RuntimeError("the jupyter server did not start")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def run_session(server: Server, llm: ScriptedLLMServer, index: int, turns: int) -> tuple[list[float], int]:
    """One notebook, ``turns`` turns in a row; returns (seconds per turn, errors)."""
    path = f"nb{index}.ipynb"
    code, session = await server.call("api/sessions", "POST", {"path": path, "type": "notebook", "name": "",
                                                                "kernel": {"name": "python3"}})
    if code != 201:
        return [], turns
    planner, coder = f"planner-{index}", f"coder-{index}"
    ws = await websocket_connect(HTTPRequest(server.url.replace("http", "ws") + f"taskweaver_lab/events?path={path}",
                                             headers={"Authorization": f"token {server.token}"}))
    times, errors = [], 0
    for turn in range(turns):
        llm.add(planner, plan_reply(f"Print {turn}."), plan_reply(f"Printed {turn}.", send_to="User", stop="Completed"))
        llm.add(coder, code_reply(f"print({turn})"))
        started = time.perf_counter()
        status, accepted = await server.call("taskweaver_lab/turns", "POST", {
            "path": path, "kernel_id": session["kernel"]["id"], "message": f"print {turn}",
            "overrides": {"planner_model": planner, "code_generator_model": coder}})
        if status != 202:
            errors += 1
            print(f"  session {index} turn {turn}: refused ({status}): {accepted.get('error')}", file=sys.stderr)
            continue
        while True:
            message = await asyncio.wait_for(ws.read_message(), 300)
            envelope = json.loads(message or "{}")
            event = envelope.get("event", {})
            if envelope.get("turn_id") == accepted["turn_id"] and event.get("kind") == "turn" \
                    and event.get("state") in ("finished", "failed"):
                if event["state"] != "finished":
                    errors += 1
                    print(f"  session {index} turn {turn}: failed: {event.get('error')}", file=sys.stderr)
                times.append(time.perf_counter() - started)
                break
    ws.close()
    return times, errors


async def poll_status(server: Server, stop: asyncio.Event) -> list[float]:
    times = []
    while not stop.is_set():
        started = time.perf_counter()
        await server.call("taskweaver_lab/status")
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.1)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else (values[0] if values else float("nan"))


async def measure(root: Path) -> list[Row]:
    with ScriptedLLMServer() as llm:
        for index in range(SESSIONS + 1):
            nbformat.write(nbformat.v4.new_notebook(), root / f"nb{index}.ipynb")
        server = Server(root, llm)
        try:
            await server.ready()
            idle_get = [(await _timed(server.call("taskweaver_lab/status"))) for _ in range(20)]
            alone, alone_errors = await run_session(server, llm, SESSIONS, TURNS)  # the baseline: one session alone
            rss_before = server.rss_mb()
            stop = asyncio.Event()
            poller = asyncio.ensure_future(poll_status(server, stop))
            results = await asyncio.gather(*(run_session(server, llm, i, TURNS) for i in range(SESSIONS)))
            stop.set()
            loaded_get = await poller
            rss_after = server.rss_mb()
        finally:
            server.stop()
    crowd = [t for times, _ in results for t in times[1:]]  # each session's first turn also sets its kernel up
    alone = alone[1:]
    errors = sum(e for _, e in results)
    rounds = SESSIONS * TURNS
    growth = (rss_after - rss_before) * 100 / rounds
    return [
        (f"{SESSIONS} concurrent sessions x {TURNS} turns: 0 errors", "", float(errors), float(alone_errors),
         errors == 0, f"baseline: one session alone; {rounds - errors} of {rounds} turns finished"),
        (f"turn time p95 with {SESSIONS} sessions <= 100 ms (zero-latency LLM, trivial cell)", "ms", p95(crowd) * 1000,
         p95(alone) * 1000, p95(crowd) <= 0.1, "baseline: one session alone, same server"),
        ("authenticated GET status p95 under that load (no goal: reported)", "ms", p95(loaded_get) * 1000,
         p95(idle_get) * 1000, True, "baseline: the idle server"),
        ("server memory growth <= 50 MB per 100 rounds", "MB", growth, rss_before, growth <= 50,
         "baseline column: resident MB before the crowd"),
    ]


async def _timed(call: Any) -> float:
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


def server_rows() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(measure(Path(tmp)))


if __name__ == "__main__":
    for row in server_rows():
        print(row)
