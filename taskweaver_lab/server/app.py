"""The jupyter_server extension: the composition root of the server side.

Builds the ``TaskWeaverApp`` from the server's config (``c.TaskWeaverLab.*`` / ``--TaskWeaverLab.*``;
the traitlets are declared once in ``config.py``), the ``TurnManager`` and the routes. Once the port is
known it tells kernels where the server is (``TASKWEAVER_LAB_SERVER_URL``) and makes sure kernels
started by this server never inherit the secrets in ``TaskWeaverLab.scrub_env``. With
``TaskWeaverLab.sandbox=landlock`` it offers the sandboxed kernelspec and lets turns run only in its
kernels (``sandbox_kernelspec.py``).
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp

from ..config import DEFAULT_SCRUB_ENV, NO_ENDPOINT_HELP, SERVER_URL_ENV, TaskWeaverLab
from ..secrets import scrubbed_env
from ..steps import TaskWeaverLabError
from .gateway_kernel import GATEWAY_SANDBOX, is_gateway
from .sandbox_kernelspec import SandboxKernels, ServerSandbox



class TaskWeaverLabExtension(ExtensionApp):
    name = "taskweaver_lab"
    description = "TaskWeaver's plan -> code -> verify -> run loop in the notebook's own kernel."
    classes = [*ExtensionApp.classes, TaskWeaverLab]  # help of the extension lists the TaskWeaverLab section

    config_error = ""  # set when the TaskWeaverLab config is unusable: the extension runs degraded (below)

    def initialize_settings(self) -> None:
        from ..session import TaskWeaverApp

        self.turns: Any = None  # the TurnManager needs the running loop: see below
        self.sandbox: ServerSandbox | None = None
        try:
            self.core = TaskWeaverApp(traitlets_config=self.config)
        except TaskWeaverLabError as exc:
            # Degraded: the routes still load, so the sidebar shows this sentence instead of a 404 page;
            # every endpoint answers with it and no turn can start.
            self.config_error = (f"The TaskWeaver server extension is not running because of its configuration: "
                                 f"{exc} Fix it in the server's config (jupyter_server_config.py or the command "
                                 "line) and restart the Jupyter server.")
            self.log.error("taskweaver_lab: %s", self.config_error)
            return
        self.config_section: TaskWeaverLab = self.core.config
        for problem in self.core.load_errors:
            self.log.warning("taskweaver_lab: %s", problem)
        self.sandbox = self._setup_sandbox()

    def _setup_sandbox(self) -> ServerSandbox | None:
        """Kernels of the sandbox kernelspec always get their IPC plumbing (it may be installed by hand);
        with sandbox=landlock the spec is also offered and turns are gated on it (sandbox_kernelspec.py)."""
        SandboxKernels(self.serverapp.kernel_manager).install()
        if self.config_section.sandbox != "landlock":
            return None
        if is_gateway(self.serverapp.kernel_manager):  # degraded: every endpoint says why (gateway_kernel.py)
            self.config_error = f"The TaskWeaver server extension is not running: {GATEWAY_SANDBOX}"
            self.log.error("taskweaver_lab: %s", self.config_error)
            return None
        server_sandbox = ServerSandbox(self.serverapp, self.log)
        server_sandbox.offer()
        return server_sandbox

    def initialize_handlers(self) -> None:
        from .handlers import routes

        self.handlers.extend(routes())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        from .turns import TurnManager

        if self.config_error:  # degraded: kernels still never see the secrets, and %%taskweaver runs in-process
            scrub_kernel_env(serverapp.kernel_manager, list(DEFAULT_SCRUB_ENV), "")
            return
        url = server_url(serverapp)
        if url:
            os.environ[SERVER_URL_ENV] = url
        scrub_kernel_env(serverapp.kernel_manager, list(self.config_section.scrub_env), url)
        admit = self.sandbox.admit if self.sandbox is not None else None
        self.turns = TurnManager(self.core, serverapp, asyncio.get_running_loop(), self.ydoc, admit=admit)
        if self.config_section.usage_log:  # the admin's per-user usage log (usage_log.py)
            from .usage_log import UsageLog

            usage_log = UsageLog(self.config_section.usage_log)
            self.turns.on_finished = lambda turn, request, last: usage_log.record(turn, request, last, self.config_section)
        self.log.info("taskweaver_lab: %s; kernels reach the server at %s",
                      "LLM endpoint configured" if self.configured else "no LLM endpoint configured", url or "(unix socket)")

    async def stop_extension(self) -> None:
        if self.turns is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.turns.close)
        if self.sandbox is not None:
            self.sandbox.close()

    @property
    def configured(self) -> bool:
        return self.config_section.endpoint_configured

    def ydoc(self) -> Any | None:
        """The collaboration extension when it is loaded and RTC is on (looked up late: load order varies).

        With ``YDocExtension.disable_rtc`` the browser edits the notebook without the shared document,
        so cells put there would never reach the open notebook: the sidebar inserts them instead."""
        ext = self.serverapp.web_app.settings.get("jupyter_server_ydoc") if self.serverapp else None
        return None if ext is None or getattr(ext, "disable_rtc", False) else ext

    def status(self) -> dict[str, Any]:
        """``GET status``: what the sidebar needs; never the key. Degraded: the config error (a 500)."""
        if self.config_error:
            from .turns import TurnError

            raise TurnError(500, self.config_error)
        config = self.config_section
        return {"configured": self.configured, "help": "" if self.configured else NO_ENDPOINT_HELP,
                "models": {"planner": config.model_for("planner"), "code_generator": config.model_for("code_generator")},
                "rtc": self.ydoc() is not None, "approval": config.approval,
                "user_base_url": config.allow_user_base_url, "allowed_models": list(config.allowed_models),
                "load_errors": list(self.core.load_errors) + list(getattr(self.core.plugins, "unavailable", {}).values()),
                "sandbox": "landlock" if self.sandbox is not None else "none",
                **(self.sandbox.status() if self.sandbox is not None else {})}


def server_url(serverapp: Any) -> str:
    """The URL kernels on this machine use to reach the server (loopback when listening on all interfaces)."""
    if getattr(serverapp, "sock", ""):
        return ""  # a unix socket: the magic runs in-process
    host = serverapp.ip
    if host in ("", "0.0.0.0", "*", "::", "localhost"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if getattr(serverapp, "certfile", "") else "http"
    return f"{scheme}://{host}:{serverapp.port}{serverapp.base_url}"


def scrub_kernel_env(kernel_manager: Any, patterns: list[str], url: str) -> None:
    """Every kernel this server starts (and restarts: jupyter_client reuses the launch env) gets a
    copy of the env without the secrets. The server itself keeps them (its LLM client and other
    extensions may need them)."""
    original = kernel_manager.start_kernel

    async def start_kernel(*args: Any, **kwargs: Any) -> Any:
        env = scrubbed_env(kwargs.get("env") or os.environ, patterns)
        if url:  # TASKWEAVER_LAB_* is scrubbed by default, but this one the kernel needs
            env[SERVER_URL_ENV] = url
        kwargs["env"] = env
        return await original(*args, **kwargs)

    kernel_manager.start_kernel = start_kernel
