"""The jupyter_server extension (minimal placeholder; the server engineer replaces it)."""
from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp


class TaskWeaverLabExtension(ExtensionApp):
    name = "taskweaver_lab"
