"""``jupyter taskweaver local-model start|stop|status``: the product's own offline model.

llama.cpp's OpenAI-compatible ``llama-server`` serving a small code model on loopback, everything kept in the user's
cache dir (``$TASKWEAVER_LOCAL_MODEL_HOME``, else ``$XDG_CACHE_HOME/taskweaver_lab/local-model``, else
``~/.cache/taskweaver_lab/local-model``)::

    <home>/build/bin/llama-server      built once (local_model_setup.py)
    <home>/models/<file>.gguf          fetched once, sha256 checked
    <home>/run/server-<port>.json      the server we started: pid, model, log
    <home>/logs/server-<port>.log      its output

``TASKWEAVER_LOCAL_MODEL_SERVER`` names another server executable taking llama-server's arguments (your own build,
or a stand-in in tests). ``python -m taskweaver_lab.local_model endpoint [jupyter lab args]`` says whether an LLM
endpoint is configured (scripts/start.sh uses it to decide whether to start the local model).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .local_model_setup import PROGRESS_EVERY, Say, cpu_count, elapsed, ensure_model, ensure_server
from .steps import TaskWeaverLabError

HOME_ENV = "TASKWEAVER_LOCAL_MODEL_HOME"
SERVER_ENV = "TASKWEAVER_LOCAL_MODEL_SERVER"
ALIAS = "local-coder"  # the model name clients ask for, whatever the file
DEFAULT_PORT = 8013
CONTEXT_TOKENS = 4096
LOAD_TIMEOUT = 600.0  # seconds for the server to load its model and answer /health
GGUF_MAGIC = b"GGUF"


def model_home() -> Path:
    explicit = os.environ.get(HOME_ENV, "")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "taskweaver_lab" / "local-model"


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------------------------------------
def _proc_start(pid: int) -> str:
    """The process's start time (Linux /proc), to tell our server from a later process that got its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, started: str = "") -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True  # no /proc (macOS): the signal check is all we have
    return state != "Z" and (not started or _proc_start(pid) == started)


def _health(port: int) -> int:
    """HTTP status of GET /health (0: nothing answers). llama-server says 503 while it loads the model."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as reply:  # noqa: S310
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except Exception:
        return 0


def _serves_alias(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url(port)}/models", timeout=3) as reply:  # noqa: S310
            return ALIAS in json.dumps(json.loads(reply.read()))
    except Exception:
        return False


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- state -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Running:
    pid: int
    port: int
    model: str
    log: str
    started: str = ""

    def line(self) -> str:
        return (f"Local model running: base URL {base_url(self.port)}, model {ALIAS} ({Path(self.model).name}, "
                f"pid {self.pid}; log: {self.log})")


def _state_file(home: Path, port: int) -> Path:
    return home / "run" / f"server-{port}.json"


def _read_state(home: Path, port: int) -> Running | None:
    """Our server on ``port`` if it is still alive; a stale state file is removed."""
    path = _state_file(home, port)
    try:
        state = Running(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if _alive(state.pid, state.started):
        return state
    path.unlink(missing_ok=True)
    return None


def check_gguf(path: str) -> Path:
    """``path`` as an existing GGUF file (it starts with the GGUF magic), else one sentence saying what is wrong."""
    model = Path(path).expanduser().resolve()
    if not model.is_file():
        raise TaskWeaverLabError(f"--model {path}: no such file; give the path of a .gguf model file.")
    with model.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise TaskWeaverLabError(f"--model {path} is not a GGUF file (it does not start with 'GGUF'); llama.cpp "
                                 "serves GGUF models only: convert it, or download the GGUF build of the model.")
    return model


# --- the commands --------------------------------------------------------------------------------------------
def status(port: int, home: Path) -> tuple[int, str]:
    running = _read_state(home, port)
    if running and _health(port) == 200:
        return 0, running.line()
    if running:
        return 1, f"Local model starting on port {port} (pid {running.pid}, still loading; log: {running.log})."
    if _health(port) == 200 and _serves_alias(port):
        return 0, (f"Local model running: base URL {base_url(port)}, model {ALIAS} (not started from {home}; stop "
                   "it where it was started).")
    return 1, f"Local model not running on port {port}."


def start(port: int, model_path: str | None, home: Path, say: Say = _say) -> str:
    """Start the server (building and fetching once), or say it already runs; the line with its base URL."""
    if os.name != "posix":
        raise TaskWeaverLabError("The local model command supports Linux and macOS; on Windows run llama.cpp's "
                                 "llama-server yourself and set OPENAI_BASE_URL to it.")
    model = check_gguf(model_path) if model_path else None
    running = _read_state(home, port)
    if running:
        if model and Path(running.model) != model:
            raise TaskWeaverLabError(f"The local model on port {port} serves {running.model}: stop it first "
                                     f"(jupyter taskweaver local-model stop --port {port}), or use another --port.")
        if _health(port) != 200:
            _wait_healthy(running, None, say)
        return running.line() + " (already running)"
    if _port_taken(port):
        if _health(port) == 200 and _serves_alias(port) and not model:
            return (f"Local model running: base URL {base_url(port)}, model {ALIAS} (already running, not started "
                    f"from {home}).")
        raise TaskWeaverLabError(f"Port {port} is in use by another program: pick a free one with --port N "
                                 "(and point OPENAI_BASE_URL at it).")
    home.mkdir(parents=True, exist_ok=True)
    model = model or ensure_model(home, say)
    override = os.environ.get(SERVER_ENV, "")
    binary = Path(override) if override else ensure_server(home, say)
    if override and not (binary.is_file() and os.access(binary, os.X_OK)):
        raise TaskWeaverLabError(f"{SERVER_ENV}={override} is not an executable file: fix or unset it.")
    return _launch(binary, model, port, home, say).line()


def server_command(binary: Path, model: Path, port: int) -> list[str]:
    threads = str(cpu_count())
    return [str(binary), "-m", str(model), "--alias", ALIAS, "--host", "127.0.0.1", "--port", str(port),
            "-c", str(CONTEXT_TOKENS), "-np", "1", "-t", threads, "-tb", threads]


def _launch(binary: Path, model: Path, port: int, home: Path, say: Say) -> Running:
    log = home / "logs" / f"server-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _state_file(home, port).parent.mkdir(parents=True, exist_ok=True)
    say(f"starting {binary.name} on 127.0.0.1:{port} with {model.name}")
    with log.open("ab") as out:
        process = subprocess.Popen(server_command(binary, model, port), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    running = Running(process.pid, port, str(model), str(log), _proc_start(process.pid))
    _state_file(home, port).write_text(json.dumps(running.__dict__))
    _wait_healthy(running, process, say)
    return running


def _wait_healthy(running: Running, process: subprocess.Popen[bytes] | None, say: Say) -> None:
    """Wait for /health to say 200, a progress line every 15 s; the server stopped and said why if it cannot."""
    started = time.monotonic()
    next_tick = started + PROGRESS_EVERY
    while _health(running.port) != 200:
        code = process.poll() if process else (None if _alive(running.pid, running.started) else "?")
        if code is not None:
            _forget(running)
            hint = (" (SIGILL: this build does not suit this CPU; delete the build/ folder next to models/ and start "
                    "again)") if code == -signal.SIGILL else ""
            raise TaskWeaverLabError(f"The local model server exited (code {code}){hint}: the end of {running.log} "
                                     "says why.")
        if time.monotonic() - started > LOAD_TIMEOUT:
            _terminate(running)
            raise TaskWeaverLabError(f"The local model server did not answer within {int(LOAD_TIMEOUT)} s and was "
                                     f"stopped: the end of {running.log} says why.")
        if time.monotonic() >= next_tick:
            say(f"  loading the model: {elapsed(time.monotonic() - started)} elapsed (log: {running.log})")
            next_tick += PROGRESS_EVERY
        time.sleep(0.5)


def _forget(running: Running) -> None:
    _state_file(Path(running.log).parent.parent, running.port).unlink(missing_ok=True)


def _terminate(running: Running) -> None:
    """SIGTERM, then SIGKILL after 15 s; the state file removed."""
    try:
        os.kill(running.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(running.pid, running.started) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(running.pid, running.started):
            os.kill(running.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _forget(running)


def stop(port: int, home: Path) -> str:
    running = _read_state(home, port)
    if not running:
        return f"Local model not running on port {port} (nothing started from {home}); nothing to stop."
    _terminate(running)
    return f"Local model on port {port} stopped (pid {running.pid})."


# --- the command line ----------------------------------------------------------------------------------------
def add_cli(sub: Any) -> None:
    """``jupyter taskweaver local-model start|stop|status [--model PATH] [--port N]``."""
    parser = sub.add_parser("local-model", help="serve a small code model offline (llama.cpp, built once into your "
                                                "cache dir) on http://127.0.0.1:PORT/v1 as model 'local-coder'",
                                description=f"Files are kept in ${HOME_ENV}, else $XDG_CACHE_HOME/taskweaver_lab/"
                                            f"local-model, else ~/.cache/taskweaver_lab/local-model. ${SERVER_ENV} "
                                            "names another llama-server executable. status exits 1 when not running.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--model", help="a GGUF model file to serve (default: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, "
                                        "downloaded once)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"loopback port (default {DEFAULT_PORT})")


def run_cli(args: argparse.Namespace) -> int:
    home = model_home()
    if args.action == "start":
        print(start(args.port, args.model, home), flush=True)
        print(f"Use it: OPENAI_BASE_URL={base_url(args.port)} OPENAI_API_KEY=local jupyter lab "
              f"--TaskWeaverLab.model={ALIAS}", flush=True)
        return 0
    if args.action == "stop":
        print(stop(args.port, home), flush=True)
        return 0
    code, line = status(args.port, home)
    print(line, flush=True)
    return code


# --- is an endpoint configured? (scripts/start.sh) -------------------------------------------------------------
ENDPOINT_TRAITS = ("base_url", "api_key", "azure_endpoint")


def configured_endpoint(lab_args: Sequence[str]) -> str:
    """Where an LLM endpoint is configured for ``jupyter lab <lab_args>`` (empty: nowhere): the command line's
    ``--TaskWeaverLab.base_url=``/``api_key=``/``azure_endpoint=``, OPENAI_BASE_URL/OPENAI_API_KEY, config files."""
    for arg in lab_args:
        name, _, value = arg.partition("=")
        if name in {f"--TaskWeaverLab.{trait}" for trait in ENDPOINT_TRAITS} and value:
            return f"the command line ({name})"
    for env in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        if os.environ.get(env):
            return f"${env}"
    from .config import TaskWeaverLab, load_config_files

    config = TaskWeaverLab(config=load_config_files())
    found = [trait for trait in ENDPOINT_TRAITS if getattr(config, trait)]
    return f"the Jupyter config (TaskWeaverLab.{found[0]})" if found else ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["endpoint"]:
        print("usage: python -m taskweaver_lab.local_model endpoint [jupyter lab args]", file=sys.stderr)
        return 2
    try:
        where = configured_endpoint(argv[1:])
    except TaskWeaverLabError as exc:
        print(f"taskweaver: {exc}", file=sys.stderr)
        return 2
    if where:
        print(where)
    return 0 if where else 1


if __name__ == "__main__":
    sys.exit(main())
