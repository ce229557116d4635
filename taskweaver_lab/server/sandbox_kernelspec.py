"""``--TaskWeaverLab.sandbox=landlock`` in a Jupyter server: the sandboxed kernelspec, its IPC plumbing, the turn gate.

* **The kernelspec** ``taskweaver-sandbox`` ("Python 3 (TaskWeaver sandbox)") runs ipykernel through the
  launcher of ``sandbox.py`` with no ``--workspace``: the workspace is the kernel's cwd, which the server sets
  to the notebook's folder, so one static spec serves every notebook. With sandbox=landlock the extension
  writes it into a folder of its own and puts that folder first in the server's ``KernelSpecManager.kernel_dirs``
  (no install step; it also wins over a stale installed copy). ``jupyter taskweaver install-sandbox-kernelspec``
  installs the same spec for servers that should offer it without enforcing it.
* **IPC plumbing** (``SandboxKernels``, on whenever the extension is loaded, for that kernelspec only): the
  sandbox denies inet sockets and every ``connect()``, so these kernels must use ``transport="ipc"``. The
  per-kernel manager gets an absolute ``ip`` in a private 0700 folder next to the connection file (or in the
  temp dir when that path would pass the 107-byte unix socket limit); the folder and the launcher's
  ``kernel-<id>-sandbox`` state folder are removed when the kernel leaves the server (shutdown, death, failed
  start). Other kernelspecs are not touched.
* **The turn gate** (``ServerSandbox.admit``, handed to the ``TurnManager``): with sandbox=landlock a turn runs
  only in a kernel of that kernelspec whose process really is under the seccomp filter (``/proc/<pid>/status``);
  anything else, including a machine without Landlock, is refused with one actionable sentence.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .. import sandbox
from ..steps import TaskWeaverLabError

KERNEL_NAME = "taskweaver-sandbox"
DISPLAY_NAME = "Python 3 (TaskWeaver sandbox)"
SWITCH_KERNEL = (f"This server runs TaskWeaver only in sandboxed kernels: switch the notebook's kernel to "
                 f"'{DISPLAY_NAME}' (Kernel > Change Kernel).")
SOCKET_PATH_MAX = 107          # sizeof(sockaddr_un.sun_path) - 1 on Linux
SOCKET_NAME_ROOM = len("/ipc-65535")
CONFINE_WAIT_S = 15.0          # launcher -> Landlock -> exec -> seccomp takes well under a second; 2 busy cores
log = logging.getLogger("taskweaver_lab.sandbox")


# --- the kernelspec -------------------------------------------------------------------------------------
def kernelspec() -> dict[str, Any]:
    return {"argv": sandbox.sandboxed_kernel_cmd(None), "display_name": DISPLAY_NAME, "language": "python",
            "interrupt_mode": "signal",  # the server sends SIGINT from outside; Landlock scopes only the inside
            "metadata": {"debugger": False, "taskweaver_lab": {"sandbox": "landlock"}}}


def write_kernelspec(kernels_dir: Path) -> Path:
    """``kernels_dir/taskweaver-sandbox/kernel.json`` (+ ipykernel's logos, so launchers show an icon)."""
    spec_dir = kernels_dir / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps(kernelspec(), indent=1))
    try:
        from ipykernel.kernelspec import RESOURCES

        for logo in Path(RESOURCES).glob("logo-*"):
            shutil.copy(logo, spec_dir / logo.name)
    except (ImportError, OSError):
        pass  # an icon is nice to have
    return spec_dir


def install_kernelspec(user: bool = False, prefix: str | None = None) -> str:
    """Install the spec with jupyter_client (the ``install-sandbox-kernelspec`` command); returns where."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        source = write_kernelspec(Path(tmp))
        return KernelSpecManager().install_kernel_spec(str(source), KERNEL_NAME, user=user, replace=True, prefix=prefix)


# --- IPC plumbing for kernels of that spec --------------------------------------------------------------
def private_socket_dir(connection_file: str) -> str:
    """A fresh 0700 folder for the kernel's unix sockets: next to the connection file when the socket paths
    fit the kernel's limit there, else in the temp dir."""
    parent = os.path.dirname(os.path.abspath(connection_file))
    fits = lambda folder: len(os.path.join(folder, "twl-XXXXXXXX")) + SOCKET_NAME_ROOM <= SOCKET_PATH_MAX  # noqa: E731
    if not fits(parent):
        parent = tempfile.gettempdir()
        if not fits(parent):
            raise TaskWeaverLabError(f"No folder short enough for the sandboxed kernel's unix sockets (the limit is "
                                     f"{SOCKET_PATH_MAX} bytes): set TMPDIR to a short path such as /tmp.")
    os.makedirs(parent, mode=0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix="twl-", dir=parent)  # mkdtemp: mode 0700, never an existing folder


def kernel_id_of(connection_file: str) -> str:
    match = re.fullmatch(r"kernel-(.+)\.json", os.path.basename(connection_file))
    return match.group(1) if match else connection_file


class SandboxKernels:
    """Makes a server's MappingKernelManager start kernels of the sandbox kernelspec over IPC, and clean up.

    Hooks, all on this one manager instance: its ``kernel_manager_factory`` (a public trait: the constructor of
    per-kernel managers, where ``transport``/``ip`` must be set before the connection file is written),
    ``start_kernel`` (a failed start leaves no folder) and ``remove_kernel`` (every way a kernel leaves the
    server ends there: shutdown, shutdown_all, a kernel that died for good)."""

    def __init__(self, kernel_manager: Any) -> None:
        self.kernel_manager = kernel_manager
        self.folders: dict[str, tuple[str, str]] = {}   # kernel id -> (socket folder, state folder)

    def install(self) -> None:
        mkm = self.kernel_manager
        make, start, remove = mkm.kernel_manager_factory, mkm.start_kernel, mkm.remove_kernel
        mkm.kernel_manager_factory = functools.partial(self._make, make)
        mkm.start_kernel = functools.partial(self._start, start)
        mkm.remove_kernel = functools.partial(self._remove, remove)

    def _make(self, make: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        connection_file = kwargs.get("connection_file")
        if kwargs.get("kernel_name") != KERNEL_NAME or not connection_file:
            return make(*args, **kwargs)
        sockets = private_socket_dir(connection_file)
        self.folders[kernel_id_of(connection_file)] = (sockets, sandbox.default_state_dir(connection_file))
        return make(*args, **{**kwargs, "transport": "ipc", "ip": os.path.join(sockets, "ipc")})

    async def _start(self, start: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        name = kwargs.get("kernel_name") or self.kernel_manager.default_kernel_name
        if name == KERNEL_NAME and not kwargs.get("kernel_id"):
            kwargs["kernel_id"] = self.kernel_manager.new_kernel_id()  # known here, to clean up after a failure
        try:
            return await start(*args, **kwargs)
        except BaseException:
            if kwargs.get("kernel_id") and kwargs["kernel_id"] not in self.kernel_manager:
                self.forget(kwargs["kernel_id"])
            raise

    def _remove(self, remove: Callable[[str], Any], kernel_id: str) -> Any:
        manager = remove(kernel_id)
        self.forget(kernel_id)
        return manager

    def forget(self, kernel_id: str) -> None:
        for folder in self.folders.pop(kernel_id, ()):
            shutil.rmtree(folder, ignore_errors=True)


# --- sandbox=landlock: offer the spec, gate the turns ---------------------------------------------------
def is_confined(pid: int | None) -> bool:
    """True when process ``pid`` runs with no_new_privs under a seccomp filter (what the launcher installs)."""
    try:
        status = Path(f"/proc/{int(pid)}/status").read_text() if pid else ""  # type: ignore[arg-type]
    except (OSError, ValueError):
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return fields.get("Seccomp", "").strip() == "2" and fields.get("NoNewPrivs", "").strip() == "1"


def wait_until_confined(kernel: Any, timeout: float = CONFINE_WAIT_S) -> bool:
    """(worker thread) True once the kernel's process is confined; False when it is not IPC or not in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            manager = kernel.manager
        except KeyError:  # the kernel went away meanwhile
            return False
        if getattr(manager, "transport", "") != "ipc":
            return False
        if is_confined(getattr(getattr(manager, "provisioner", None), "pid", None)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class ServerSandbox:
    """What sandbox=landlock means for one server: the spec is offered, and turns run only in its kernels.

    ``problem`` is set when the server cannot give sandboxed kernels (no Landlock, not x86_64, kernels on a
    remote gateway, the spec filtered out by ``allowed_kernelspecs``); every turn is then refused with it:
    never a silent fallback to an unsandboxed kernel."""

    def __init__(self, serverapp: Any, logger: logging.Logger | None = None) -> None:
        self.serverapp, self.log = serverapp, logger or log
        self.problem = ""
        self.spec_root: Path | None = None

    def offer(self) -> None:
        try:
            abi = sandbox.check_support()
            self._check_local_kernels()
            self._add_kernel_dir()
        except TaskWeaverLabError as exc:
            self.problem = f"TaskWeaverLab.sandbox=landlock is set but this server cannot run sandboxed kernels: {exc}"
            self.log.error("taskweaver_lab: %s Every TaskWeaver turn will be refused.", self.problem)
            return
        self.log.info("taskweaver_lab: sandbox=landlock (Landlock ABI %d, seccomp): kernelspec '%s' (\"%s\") is offered; "
                      "TaskWeaver turns run only in kernels of that kernelspec, over IPC.", abi, KERNEL_NAME, DISPLAY_NAME)

    def _check_local_kernels(self) -> None:
        gateway = getattr(self.serverapp, "gateway_config", None)
        if gateway is not None and getattr(gateway, "gateway_enabled", False):
            raise TaskWeaverLabError("its kernels run on a remote kernel gateway, where this extension cannot "
                                     "start the sandbox launcher.")

    def _add_kernel_dir(self) -> None:
        """Our spec folder goes first in the server's kernel_dirs: the first folder holding a name wins."""
        runtime = Path(self.serverapp.runtime_dir)
        self.spec_root = runtime / f"taskweaver_lab-{os.getpid()}-kernels"
        write_kernelspec(self.spec_root)
        ksm = self.serverapp.kernel_spec_manager
        ksm.kernel_dirs = [str(self.spec_root), *[d for d in ksm.kernel_dirs if d != str(self.spec_root)]]
        if KERNEL_NAME not in ksm.find_kernel_specs():
            raise TaskWeaverLabError(f"the kernelspec '{KERNEL_NAME}' is filtered out by the server's "
                                     "KernelSpecManager (add it to c.KernelSpecManager.allowed_kernelspecs).")

    def admit(self, kernel: Any) -> None:
        """(worker thread, before a sidebar or %%taskweaver turn) Raise ``TurnError`` unless ``kernel`` is a
        sandboxed kernel. A kernel started a moment ago may still be in the launcher: wait for its filter."""
        from .turns import TurnError

        if self.problem:
            raise TurnError(412, self.problem)
        if getattr(kernel.manager, "kernel_name", "") != KERNEL_NAME:
            raise TurnError(409, SWITCH_KERNEL)
        if not wait_until_confined(kernel):
            raise TurnError(409, f"Kernel {kernel.kernel_id} of '{DISPLAY_NAME}' is not under the OS sandbox: restart "
                                 "the kernel, and if this persists check the server log.")

    def status(self) -> dict[str, Any]:
        return {"sandbox_kernel": DISPLAY_NAME, **({"sandbox_error": self.problem} if self.problem else {})}

    def close(self) -> None:
        if self.spec_root is not None:
            shutil.rmtree(self.spec_root, ignore_errors=True)
