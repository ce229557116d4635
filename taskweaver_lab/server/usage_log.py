"""The per-user usage log (``TaskWeaverLab.usage_log``): one JSON line per finished turn, for the admin.

On JupyterHub each user has their own single-user server, so the server's user is the user
(``JUPYTERHUB_USER``, else the OS account the server runs as). A line holds counts and names only:
never the message, prompts, code or keys. Appends are serialised by a lock and written in one call,
so concurrent turns of one server never interleave a line.
"""
from __future__ import annotations

import datetime
import getpass
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("taskweaver_lab.usage")


def server_user() -> str:
    """Who this server serves: JupyterHub's user name, else the OS account."""
    name = os.environ.get("JUPYTERHUB_USER", "")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def _safe(name: str) -> str:
    """A user name as one file-name part (no folders, no dot-dot)."""
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name).lstrip(".") or "unknown"


class UsageLog:
    """Appends one line per finished turn to ``path`` (its folder is made when missing)."""

    def __init__(self, path: str, user: str | None = None) -> None:
        self.user = user or server_user()
        self.path = Path(path.replace("{user}", _safe(self.user))).expanduser()  # e.g. /var/log/taskweaver/{user}.jsonl
        self._lock = threading.Lock()

    def line(self, turn: Any, request: Any, last: dict[str, Any], models: dict[str, str]) -> dict[str, Any]:
        usage = last.get("usage") or {}
        return {"user": self.user, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "path": turn.path, "origin": turn.origin, "turn_id": turn.id, "state": last.get("state", ""),
                "calls": int(usage.get("calls", 0)), "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                "completion_tokens": int(usage.get("completion_tokens", 0)), "models": models}

    def record(self, turn: Any, request: Any, last: dict[str, Any], config: Any) -> None:
        """(the turn's worker thread) Append the turn's line; a failure is logged, never the turn's problem."""
        choices = getattr(request, "choices", None)
        models = {role: (getattr(choices, f"{role}_model", "") or config.model_for(role))
                  for role in ("planner", "code_generator")}
        text = json.dumps(self.line(turn, request, last, models), sort_keys=True) + "\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(text)
        except OSError as exc:
            log.warning("taskweaver_lab: cannot append to the usage log %s: %s", self.path, exc)


def read_usage(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The log's lines (for admins and tests); a torn last line is skipped."""
    rows: list[dict[str, Any]] = []
    for text in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return rows
