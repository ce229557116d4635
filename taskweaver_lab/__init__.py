"""taskweaver_lab: TaskWeaver's plan -> code -> verify -> run loop inside Jupyter.

Importing the package stays cheap: the server extension, the kernel magic and
the Python API are imported only when first used.
"""
from __future__ import annotations

from typing import Any

try:
    from ._version import __version__
except ImportError:  # a source tree that was never built
    __version__ = "0.0.0.dev0"

__all__ = ["TaskWeaverApp", "plugin", "__version__"]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "taskweaver_lab"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import TaskWeaverLabExtension

    return [{"module": "taskweaver_lab.server.app", "app": TaskWeaverLabExtension}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext taskweaver_lab`` registers the ``%%taskweaver`` magic."""
    from .magic import load_ipython_extension as load_magic

    load_magic(ipython)


def __getattr__(name: str) -> Any:
    if name == "TaskWeaverApp":
        from .session import TaskWeaverApp

        return TaskWeaverApp
    if name == "plugin":  # @taskweaver_lab.plugin: a plain function -> a TaskWeaver plugin (authoring.py)
        from .authoring import plugin

        return plugin
    raise AttributeError(f"module 'taskweaver_lab' has no attribute {name!r}")
