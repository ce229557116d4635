"""``%%taskweaver`` / ``%taskweaver``: ask the agent from a notebook cell.

    %load_ext taskweaver_lab
    %%taskweaver [--auto|--approve] [--new] [--plugins-only] [--local] [--no-insert]
                 [--cassette PATH [--record|--replay]] [--TaskWeaverLab.<name>=<value> ...]
    Load sales.csv and plot monthly totals

Two modes, chosen per cell:

* **Joined** (``TASKWEAVER_LAB_SERVER_URL`` is set in the kernel, i.e. the kernel was started by a
  Jupyter server running the taskweaver_lab extension): the turn runs in the SERVER, in the notebook's
  session shared with the chat sidebar. The magic posts the request signed with this kernel's own
  ZMQ key (the kernel never has the server token), then long-polls the turn's events and renders
  plan, progress and answer live. The server runs generated cells on a kernel subshell, so this cell
  blocking the main shell does not deadlock, and records them below this cell (metadata A5).
  Ctrl-C / Stop posts ``stop``. Unreachable or refusing server: one-line notice, then in-process.

* **In-process** (nbconvert, papermill, plain IPython/ipykernel, or ``--local``): the same agent core
  runs inside this kernel with the kernel itself as executor (``inprocess.InProcessExecutor``).
  LLM config: jupyter config files (``jupyter_taskweaver_config.py``/``jupyter_server_config.py`` in
  the Jupyter config path and the cwd), OPENAI_BASE_URL / OPENAI_API_KEY, then the magic line.
  **What is recorded where:** the magic cell's OUTPUT is the record; no file is written. Every record
  cell (the request, each plan, each generated code cell, the answer) is displayed there, and each
  such display_data carries the full nbformat cell with ``metadata.taskweaver_lab`` in its output
  metadata under ``taskweaver_lab.cell`` (code cells without their outputs: those are displayed right
  after the code). ``nbconvert --execute`` saves these outputs, so the executed notebook is the
  record. The history lives in this kernel: later ``%%taskweaver`` cells continue the session until
  ``--new`` or a kernel restart. Where the frontend supports it, the round's successful code is also
  offered as one new cell below (``set_next_input`` payload; ``--no-insert`` turns that off).
  ``--cassette PATH`` replays when the file exists and records otherwise (or set ``llm_cassette`` /
  ``llm_cassette_mode`` in a config file): re-runs are reproducible without an LLM endpoint.

Errors (no endpoint, endpoint down, verification exhausted, interrupted) end the cell with one
``UsageError`` line, which IPython prints without a traceback and which stops Run All / nbconvert.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display, publish_display_data

from .steps import Draft, Plan, Step, TaskWeaverLabError, Verdict

USAGE = ("Usage: %%taskweaver [--auto|--approve] [--new] [--plugins-only] [--local] [--no-insert] "
         "[--cassette PATH [--record|--replay]] [--TaskWeaverLab.<name>=<value>], the request in the cell body "
         "(or %taskweaver [options] <request>).")
FLAGS = ("--auto", "--approve", "--new", "--plugins-only", "--local", "--no-insert", "--record", "--replay")
SERVER_ENV = "TASKWEAVER_LAB_SERVER_URL"
META = "taskweaver_lab"
_OPTION = re.compile(r"""\s*(--[\w.-]+(?:=(?:"[^"]*"|'[^']*'|\S*))?)(?=\s|$)""")


# --- options ---------------------------------------------------------------------------------------
@dataclass
class Options:
    request: str
    approval: str | None = None                        # "auto" | "approve" | None: config decides
    new: bool = False
    plugins_only: bool = False
    local: bool = False
    insert: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)   # TaskWeaverLab settings from the line

    @property
    def llm_options(self) -> bool:
        """Settings only an in-process run can honour (the server has its own config)."""
        return bool(self.overrides.keys() - {"plugin_only"})


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value


def _take_options(line: str) -> tuple[list[str], str]:
    """Leading ``--options`` (``--cassette`` takes the next word); the rest of the line is request text."""
    tokens: list[str] = []
    rest = line
    while (match := _OPTION.match(rest)) is not None:
        tokens.append(match.group(1))
        rest = rest[match.end():]
        if match.group(1) == "--cassette":
            value = re.match(r"""\s*("[^"]*"|'[^']*'|\S+)""", rest)
            if value is None:
                raise TaskWeaverLabError("--cassette needs a file path.")
            tokens[-1] = "--cassette=" + value.group(1)
            rest = rest[value.end():]
    return tokens, rest.strip()


def parse_options(line: str, cell: str | None) -> Options:
    from .cli import split_config_args

    tokens, text = _take_options(line)
    flags = [t for t in tokens if t in FLAGS]
    other = [t for t in tokens if t not in FLAGS]
    cassette = [t for t in other if t.startswith("--cassette=")]
    unknown = [t for t in other if t not in cassette and not t.startswith("--TaskWeaverLab.")]
    if unknown:
        raise TaskWeaverLabError(f"Unknown option {unknown[0]}. {USAGE}")
    _, overrides = split_config_args([t for t in other if t.startswith("--TaskWeaverLab.")])
    if cassette:
        path = _unquote(cassette[-1].split("=", 1)[1])
        overrides["llm_cassette"] = path
        overrides["llm_cassette_mode"] = "replay" if Path(path).is_file() else "record"
    if "--record" in flags or "--replay" in flags:
        overrides["llm_cassette_mode"] = "record" if "--record" in flags else "replay"
    if "--plugins-only" in flags:
        overrides["plugin_only"] = True
    request = "\n".join(part for part in (text, (cell or "").strip()) if part)
    if not request:
        raise TaskWeaverLabError(f"The request is empty. {USAGE}")
    approval = "approve" if "--approve" in flags else "auto" if "--auto" in flags else None
    return Options(request, approval, "--new" in flags, "--plugins-only" in flags, "--local" in flags,
                   "--no-insert" not in flags, overrides)


# --- rendering -------------------------------------------------------------------------------------
def _plan_from_json(event: dict[str, Any]) -> Plan:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in event.items() if k != "kind"}
    return Plan(**fields)


class TurnView:
    """One turn in the magic cell's output: a live status line, progress lines, and either the record
    cells (in-process) or the live plan and answer (joined: the cells themselves go below the cell)."""

    def __init__(self, live_plan: bool) -> None:
        self.live_plan = live_plan
        self.started = time.monotonic()
        self.calls = 0
        self.state = "planning…"
        self.failure = ""
        self.answer: dict[str, Any] | None = None
        self._status: Any = None
        self._plan: Any = None

    def refresh(self, final: bool = False) -> None:
        text = f"**TaskWeaver** · {self.state} · {self.calls} LLM call{'s' if self.calls != 1 else ''}"
        if final:
            text += f" · {time.monotonic() - self.started:.1f} s"
        bundle = {"text/markdown": text, "text/plain": text.replace("**", "")}
        if self._status is None:
            self._status = display(bundle, raw=True, display_id=True)
        else:
            self._status.update(bundle, raw=True)

    def line(self, text: str) -> None:
        display({"text/markdown": text, "text/plain": text}, raw=True)

    def on_event(self, event: dict[str, Any]) -> None:
        """A step's JSON (``Step.to_json()``) or one of the server's extra event kinds."""
        handler: Callable[[dict[str, Any]], None] | None = getattr(self, "_on_" + str(event.get("kind")), None)
        if handler is not None:
            handler(event)

    def _on_llm_call(self, event: dict[str, Any]) -> None:
        self.calls += 1
        self.refresh()

    def _on_plan(self, event: dict[str, Any]) -> None:
        if event.get("send_to") != "CodeInterpreter":
            return
        self.state = f"step {event.get('current_step', 1)}: writing code…"
        self.refresh()
        if self.live_plan:
            from .notebook import plan_markdown

            text = plan_markdown(_plan_from_json(event))
            if self._plan is None:
                self._plan = display({"text/markdown": text, "text/plain": text}, raw=True, display_id=True)
            else:
                self._plan.update({"text/markdown": text, "text/plain": text}, raw=True)

    def _on_draft(self, event: dict[str, Any]) -> None:
        self.state = f"step {event.get('step', 1)}: checking attempt {event.get('attempt', 1)}…"
        self.refresh()

    def _on_verdict(self, event: dict[str, Any]) -> None:
        if not event.get("ok"):
            first = (event.get("violations") or [{}])[0]
            self.line(f"*Attempt {event.get('attempt', 1)} rejected by the verifier:* {first.get('message', '')}")

    def _on_execution(self, event: dict[str, Any]) -> None:
        self.state = "back to the Planner…"
        self.refresh()
        if self.live_plan and event.get("code"):
            mark = "✔" if event.get("ok") else "✖"
            detail = f" — `{event['error'][:200]}`" if event.get("error") else ""
            self.line(f"{mark} step {event.get('step', 1)}, attempt {event.get('attempt', 1)} ran in "
                      f"{event.get('duration_s', 0):.1f} s (cell below){detail}")

    def _on_notice(self, event: dict[str, Any]) -> None:
        if event.get("level") in ("warning", "error"):
            self.line(f"*{event['level']}:* {event.get('text', '')}")

    def _on_answer(self, event: dict[str, Any]) -> None:
        self.answer = event
        if event.get("stop") == "TaskFailure":
            self.failure = event.get("text", "") or "the round failed."
        elif self.live_plan:
            prefix = "**TaskWeaver asks:** " if event.get("is_question") else "**TaskWeaver:** "
            self.line(prefix + event.get("text", ""))

    def _on_turn(self, event: dict[str, Any]) -> None:
        if event.get("state") == "failed" and not self.failure:
            self.failure = event.get("error") or "the turn failed in the server."

    def _on_approval(self, event: dict[str, Any]) -> None:
        # Decided in the chat panel (Run/Skip/Edit): input() here is unreliable while the server runs
        # code on a subshell (ipykernel shares the stdin flag between subshells).
        self.state = "waiting for your approval in the TaskWeaver panel…"
        self.refresh()
        draft = event.get("draft") or {}
        self.line(f"*Proposed code (step {draft.get('step')}, attempt {draft.get('attempt')}), "
                  f"waiting for Run/Skip in the TaskWeaver panel:*\n```python\n{draft.get('code', '')}\n```")

    def show_cell(self, cell: dict[str, Any]) -> None:
        """In-process record: the cell, visibly, with its full JSON in the output metadata."""
        meta = cell.get("metadata", {}).get(META, {})
        if meta.get("kind") == "answer" and (meta.get("data") or {}).get("stop") == "TaskFailure":
            return  # the cell ends with this text as its one error line
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        record = {META: {"cell": {**cell, "outputs": []} if cell["cell_type"] == "code" else cell}}
        if cell["cell_type"] != "code":
            publish_display_data({"text/markdown": source, "text/plain": source}, metadata=record)
            return
        head = f"*step {meta.get('step')}, attempt {meta.get('attempt')}*"
        publish_display_data({"text/markdown": f"{head}\n```python\n{source}\n```", "text/plain": source},
                             metadata=record)
        for output in cell.get("outputs", []):
            _republish(output)

    def finish(self) -> None:
        self.state = "failed" if self.failure else "asked you a question" if (self.answer or {}).get("is_question") else "done"
        self.refresh(final=True)


def _republish(output: dict[str, Any]) -> None:
    """One captured output of an agent cell, shown again in the magic cell."""
    kind = output["output_type"]
    if kind == "stream":
        stream = sys.stderr if output.get("name") == "stderr" else sys.stdout
        stream.write(output["text"])
        stream.flush()
    elif kind in ("display_data", "execute_result"):
        publish_display_data(dict(output["data"]), metadata=dict(output.get("metadata", {})))
    elif kind == "error":
        sys.stderr.write("\n".join(output.get("traceback", [])) + "\n")
        sys.stderr.flush()


# --- in-process mode -------------------------------------------------------------------------------
class OutputRecorder:
    """Headless record: cells go to the current turn's view, i.e. into the magic cell's output."""

    def __init__(self) -> None:
        self.view: TurnView | None = None

    def add_cell(self, cell: dict[str, Any]) -> None:
        if self.view is not None:
            self.view.show_cell(cell)


_LOCAL: dict[str, Any] = {}   # this kernel's in-process session: {"key", "session", "executor"}


def _local_session(shell: Any, options: Options, view: TurnView) -> Any:
    """The kernel's session; a new one for ``--new``; settings changed on the line keep the history."""
    from .inprocess import InProcessExecutor
    from .secrets import redact
    from .session import Session, TaskWeaverApp

    key = json.dumps(options.overrides, sort_keys=True, default=str)
    current = _LOCAL.get("session")
    if current is not None and not options.new and _LOCAL.get("key") == key:
        return current
    app = TaskWeaverApp(config=options.overrides)
    executor = _LOCAL.get("executor") or InProcessExecutor(shell, str(Path.cwd()))
    executor.summary_chars = app.config.summary_chars
    executor.redact = lambda text: redact(text, [s for s in (app.config.api_key,) if s])
    executor.install(app.plugins, app.config.guard)
    for problem in app.load_errors + executor.setup_messages:
        view.line(f"*warning:* {problem}")
    executor.setup_messages.clear()
    keep = current is not None and not options.new
    session = Session(app, executor, OutputRecorder(), executor.workspace,
                      current.id if keep else uuid.uuid4().hex[:12], list(current.history) if keep else [])
    _LOCAL.update(key=key, session=session, executor=executor)
    return session


def _console_approve(view: TurnView) -> Callable[[Draft, Verdict], tuple[str, str]]:
    def approve(draft: Draft, verdict: Verdict) -> tuple[str, str]:
        note = "" if verdict.ok else f"\n\n*Not verified:* {verdict.feedback()}"
        view.line(f"*Proposed code (step {draft.step}, attempt {draft.attempt}):*\n```python\n{draft.code}\n```{note}")
        try:
            reply = input("Run this code? [y]es / [s]kip: ")
        except Exception as exc:  # ipykernel's StdinNotImplementedError: nbconvert, papermill
            raise TaskWeaverLabError("--approve needs a frontend that answers input() prompts; "
                                     "use --auto for headless runs.") from exc
        return ("run" if reply.strip().lower() in ("", "y", "yes") else "skip", draft.code)

    return approve


def run_local(shell: Any, options: Options, view: TurnView) -> None:
    session = _local_session(shell, options, view)
    executor = session.executor
    approval = options.approval or session.config.approval

    def on_event(step: Step) -> None:
        if step.kind != "delta":
            view.on_event(step.to_json())
        if step.kind == "execution" and getattr(executor, "user_interrupted", False):
            session.stop()   # Ctrl-C inside agent code ends the round, not just the cell

    view.refresh()
    session.recorder.view = view
    try:
        answer = session.chat(options.request, on_event=on_event,
                              approve=_console_approve(view) if approval == "approve" else None)
    finally:
        session.recorder.view = None
        view.finish()
    if view.failure:
        raise TaskWeaverLabError(view.failure)
    code = [s.code for s in session.history if getattr(s, "kind", "") == "execution"
            and getattr(s, "round", None) == answer.round and s.ok and s.code]
    if options.insert and code:
        shell.set_next_input(f"# %%taskweaver, session {session.id}, round {answer.round}\n" + "\n\n".join(code))


# --- joined mode: the notebook's session in the Jupyter server ---------------------------------------
class ServerUnreachable(Exception):
    pass


class ServerRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback: never via a proxy
POLL_SECONDS = 30.0
# Statuses meaning "this server cannot take magic turns" (old/absent extension, bad credential, down):
FALLBACK_STATUSES = (401, 403, 404, 405, 502, 503, 504)


class ServerLink:
    """Requests to ``{base}taskweaver_lab/kernel/...`` signed with this kernel's ZMQ key (HMAC-SHA256)."""

    def __init__(self, base_url: str, kernel_id: str, key: bytes) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.kernel_id, self.key = kernel_id, key

    @classmethod
    def from_kernel(cls, shell: Any) -> tuple["ServerLink | None", str]:
        """(link, "") when joined mode applies; (None, reason) when it should but cannot; (None, "") otherwise."""
        url = os.environ.get(SERVER_ENV, "")
        if not url:
            return None, ""
        key = getattr(getattr(getattr(shell, "kernel", None), "session", None), "key", b"")
        kernel_id = _kernel_id()
        if not key or not kernel_id:
            return None, "cannot identify this kernel to the Jupyter server"
        return cls(url, kernel_id, key), ""

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        payload = f"{stamp}\n{method}\n{path}\n".encode() + body
        return {"X-TaskWeaver-Kernel": self.kernel_id, "X-TaskWeaver-Timestamp": stamp,
                "X-TaskWeaver-Signature": hmac.new(self.key, payload, hashlib.sha256).hexdigest(),
                "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        url = self.base_url + "taskweaver_lab/kernel/" + path
        if method == "POST":  # the server refuses a repeated signature (replay): two equal requests in a second differ
            body = {**(body or {}), "nonce": uuid.uuid4().hex}
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(url, data=data if method == "POST" else None, method=method,
                                         headers=self.headers(method, urlsplit(url).path, data))
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ServerRefused(exc.code, _error_message(exc)) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServerUnreachable(str(getattr(exc, "reason", exc))) from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read() or b"{}").get("error") or f"HTTP {exc.code}")
    except ValueError:
        return f"HTTP {exc.code} {exc.reason}"


def _kernel_id() -> str:
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # not an ipykernel (plain IPython): no kernel identity
        return ""
    match = re.fullmatch(r"kernel-(.+)\.json", name)
    return match.group(1) if match else ""


def _cell_id(shell: Any) -> str | None:
    kernel = getattr(shell, "kernel", None)
    parent = kernel.get_parent() if kernel is not None and hasattr(kernel, "get_parent") else {}
    return ((parent or {}).get("metadata") or {}).get("cellId")


def run_joined(link: ServerLink, shell: Any, options: Options, view: TurnView) -> bool:
    """Run the turn in the server's session; False (after a one-line notice) to fall back in-process."""
    body: dict[str, Any] = {"message": options.request, "cell_id": _cell_id(shell), "new": options.new,
                            "plugins_only": options.plugins_only}
    if options.approval:
        body["approval"] = options.approval
    try:
        turn = link.call("POST", "turns", body)
    except (ServerUnreachable, ServerRefused) as exc:
        if isinstance(exc, ServerRefused) and exc.status not in FALLBACK_STATUSES:
            raise TaskWeaverLabError(exc.message) from None
        print(f"taskweaver: the Jupyter server did not take the turn ({exc}); running in this kernel instead.")
        return False
    view.refresh()
    try:
        _follow(link, str(turn["turn_id"]), view)
    finally:
        view.finish()
    if view.failure:
        raise TaskWeaverLabError(view.failure)
    return True


def _follow(link: ServerLink, turn_id: str, view: TurnView) -> None:
    after = 0
    try:
        while True:
            after, done = _poll(link, turn_id, view, after)
            if done:
                return
    except KeyboardInterrupt:
        _stop(link, turn_id, view, after)
        raise
    except ServerUnreachable:
        raise TaskWeaverLabError("Lost the connection to the Jupyter server during the turn; it may still be "
                                 "running: see the TaskWeaver panel.") from None


def _poll(link: ServerLink, turn_id: str, view: TurnView, after: int) -> tuple[int, bool]:
    try:
        page = link.call("GET", f"turns/{turn_id}/events?after={after}", timeout=POLL_SECONDS + 30)
    except ServerRefused as exc:
        raise TaskWeaverLabError(exc.message) from None
    events = page.get("events") or []
    for item in events:
        view.on_event(item["event"] if isinstance(item.get("event"), dict) else item)
    return after + len(events), bool(page.get("done"))


def _stop(link: ServerLink, turn_id: str, view: TurnView, after: int) -> None:
    """Post stop, then show the turn's last events; further Ctrl-Cs must not leave the turn running."""
    deadline = time.monotonic() + 15
    stopped = False
    while time.monotonic() < deadline:
        try:
            if not stopped:
                stopped = True   # once: the server's stop may interrupt this kernel (main shell) again
                link.call("POST", f"turns/{turn_id}/stop", {})
            after, done = _poll(link, turn_id, view, after)
            if done:
                return
        except KeyboardInterrupt:
            continue
        except (ServerUnreachable, TaskWeaverLabError, ServerRefused):
            return


# --- the magic -------------------------------------------------------------------------------------
def run_magic(shell: Any, options: Options) -> None:
    if not options.local:
        link, reason = ServerLink.from_kernel(shell)
        if link is not None and options.llm_options:
            print("taskweaver: LLM options on the magic line apply in this kernel only; running here "
                  "(drop them to share the chat panel's session).")
        elif link is not None and run_joined(link, shell, options, TurnView(live_plan=True)):
            return
        elif reason:
            print(f"taskweaver: {reason}; running in this kernel instead.")
    run_local(shell, options, TurnView(live_plan=False))


@magics_class
class TaskWeaverMagics(Magics):
    @line_cell_magic
    def taskweaver(self, line: str, cell: str | None = None) -> None:
        """Ask TaskWeaver (``%%taskweaver`` + request, or ``%taskweaver request``). See ``taskweaver_lab.magic``."""
        try:
            run_magic(self.shell, parse_options(line, cell))
        except TaskWeaverLabError as exc:
            raise UsageError(f"taskweaver: {exc}") from None
        except KeyboardInterrupt:
            raise UsageError("taskweaver: interrupted. Nothing after the last finished step ran; the kernel "
                             "is ready, ask again to continue.") from None


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(TaskWeaverMagics)
