"""``POST taskweaver_lab/connection``: the sidebar's "Test connection" (issue 14 item 2).

The body is ``{"overrides": {...}}``, the user's settings as a turn sends them, checked by the same
``choices_field`` (the admin's ``allowed_models`` and ``allow_user_base_url`` apply). The check itself is
``llm.test_connection`` with those choices, so it talks to the endpoint the user's turns would use, with
the same rule for keys (the server's key is never sent to a user's own ``base_url``). It blocks (HTTP to
the endpoint), so it runs in the executor, never on the server's event loop.
"""
from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..llm import test_connection
from .handlers import BaseHandler, choices_field, refusals
from .turns import require_endpoint

JSON_MODES = {"json_schema": "JSON mode works (json_schema)", "json_object": "JSON mode works (json_object)",
              "text": "no JSON mode (plain text replies are parsed)"}


def summary(result: dict[str, Any]) -> str:
    """One line for the sidebar: what works, or the one-sentence reason it does not."""
    if not result.get("ok"):
        return str(result.get("error") or "The LLM endpoint did not answer.")
    models = result.get("models") or []
    listed = (f"{len(models)} model{'' if len(models) == 1 else 's'}" if models
              else "models not listed" if result.get("models_error") else "no models listed")
    mode = JSON_MODES.get(str(result.get("json_mode")), f"JSON mode: {result.get('json_mode')}")
    return f"Connected to {result.get('endpoint')}: {listed}, {mode}."


class ConnectionHandler(BaseHandler):
    @web.authenticated
    @authorized
    @refusals
    async def post(self) -> None:
        _ = self.turns  # degraded (a bad config) or still starting: refused here, before the config is read
        data, config = self.body(), self.extensionapp.config_section
        choices = choices_field(data, config)
        require_endpoint(config, choices)
        result = await asyncio.get_running_loop().run_in_executor(None, test_connection, config, choices)
        self.finish({**result, "summary": summary(result)})
