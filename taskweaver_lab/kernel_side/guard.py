"""Kernel-side runtime guard: a PEP 578 audit hook active only while agent code runs.

STDLIB ONLY and self-contained: the executor runs this file's source inside the user's kernel as
the private module ``_taskweaver_lab_guard`` and calls ``install(workspace=...)`` once.

Second of three layers (verifier -> this guard -> optional OS sandbox). It sees what the code
*does* (open, sockets, processes, native code, unpickling) whatever the spelling the verifier saw.
It switches on for execute_requests whose metadata says ``{"taskweaver_lab": {"agent": true}}``
(IPython ``pre_execute``/``post_execute`` events: unlike ``*_run_cell`` they also fire for silent
requests), for threads those cells start, and inside ``agent_context()``. The user's own cells and
the kernel's own threads are never affected.

State lives in closures, not module globals: there is no public "off" switch. Deregistering our
IPython callbacks or patching the kernel's parent lookup is detected and the guard then stays on
for every cell (fail closed). A Python-level attacker with unrestricted introspection could still
reach closure cells; that is why the verifier forbids dunders/introspection in front of this layer
and the OS sandbox sits behind it.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import stat as _stat
import sys
import tempfile
import threading
import _thread
from typing import Any, Callable, Iterator

MODULE_NAME = "_taskweaver_lab_guard"
_MARK = "_taskweaver_lab_guard_installed"   # attribute on ``sys``: one hook per process

# Exact argv of helper programs that trusted libraries run (matplotlib's font cache, loky's core count).
ALLOWED_COMMANDS = frozenset({
    ("fc-list", "--help"), ("fc-list", "--format=%{file}\\n"), ("lscpu", "--parse=core"),
})
# Symbols threadpoolctl (scikit-learn) looks up to size BLAS/OpenMP thread pools.
_SAFE_SYMBOL_PREFIXES = ("openblas_", "scipy_openblas_", "omp_", "mkl_", "MKL_", "bli_", "blis_", "flexiblas_",
                         "goto_", "kmp_")
_SAFE_SYMBOLS = frozenset({"dl_iterate_phdr", "gnu_get_libc_version"})
_ENV_NAMES_DENIED = ("PATH", "LD_", "PYTHON", "HOME", "MPLCONFIGDIR")
_NETWORK_PREFIXES = ("socket.", "http.client.", "urllib.", "ftplib.", "smtplib.", "imaplib.", "poplib.",
                     "nntplib.", "telnetlib.", "webbrowser.")
_PROCESS_EVENTS = frozenset({"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                             "pty.spawn", "os.startfile", "os.kill", "os.killpg", "signal.pthread_kill",
                             "_thread.start_new_thread/raw"})
_ALWAYS_BLOCKED = frozenset({"pickle.find_class", "sys.addaudithook", "sys.settrace", "sys.setprofile",
                             "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
                             "ctypes.cdata", "ctypes.cdata/buffer", "ctypes.string_at", "ctypes.wstring_at",
                             "ctypes.call_function", "ctypes.PyObj_FromPtr", "ctypes.dlsym/handle",
                             "sqlite3.enable_load_extension", "sqlite3.load_extension", "os.add_dll_directory",
                             "os.mkfifo", "os.mknod"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _blocked(event: str, detail: Any) -> PermissionError:
    return PermissionError(f"taskweaver_lab guard blocked {event}: {str(detail)[:200]}")


class _Paths:
    """Resolves paths with C functions captured at install, so patched ``os`` functions can't lie."""

    def __init__(self, workspace: str, read_roots: list[str], write_roots: list[str]) -> None:
        self._lstat, self._readlink, self._getcwd = os.lstat, os.readlink, os.getcwd
        self._fsdecode, self._is_link = os.fsdecode, _stat.S_ISLNK
        self.workspace = self.resolve(workspace)
        self.write_roots = tuple({self.resolve(p) for p in [workspace, *write_roots]})
        self.read_roots = tuple({self.resolve(p) for p in [*self.write_roots, *read_roots]})

    def resolve(self, path: Any) -> str:
        """Absolute, normalized, symlinks resolved (as far as they exist)."""
        text = path if isinstance(path, str) else self._fsdecode(path)
        if not text.startswith("/"):
            text = self._getcwd() + "/" + text
        parts, resolved, hops = text.split("/"), "", 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                resolved = resolved.rsplit("/", 1)[0]
                continue
            candidate = resolved + "/" + part
            try:
                is_link = self._is_link(self._lstat(candidate).st_mode)
            except OSError:
                is_link = False
            if is_link and hops < 40:
                hops += 1
                target = self._readlink(candidate)
                resolved = "" if target.startswith("/") else resolved
                parts = [p for p in target.split("/")] + parts
                continue
            resolved = candidate
        return resolved or "/"

    @staticmethod
    def _under(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def check(self, event: str, path: Any, write: bool) -> None:
        if isinstance(path, int) or path is None:
            return   # an already-open descriptor, or "no path" (e.g. a pipe)
        full = self.resolve(path)
        if not self._under(full, self.write_roots if write else self.read_roots):
            where = "outside the workspace" if write else "outside the workspace and library folders"
            raise _blocked(event, f"{'writing' if write else 'reading'} {full} ({where} {self.workspace})")


def _default_read_roots() -> list[str]:
    import site
    import sysconfig

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values()}
    with contextlib.suppress(Exception):
        roots.update(site.getsitepackages())
    with contextlib.suppress(Exception):
        roots.add(site.getusersitepackages())
    home = os.path.expanduser("~")
    # import-path folders (e.g. an editable install) are listed and read by every import
    roots.update(p for p in sys.path if p.startswith("/") and p != "/" and not (home + "/").startswith(p.rstrip("/") + "/"))
    roots.update({"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share", "/etc/fonts",
                  "/etc/localtime", "/etc/timezone", "/sys/fs/cgroup", "/proc/cpuinfo", "/proc/meminfo",
                  f"/proc/{os.getpid()}/maps", "/dev/null", "/dev/urandom",
                  # ipykernel names cells /tmp/ipykernel_<pid>/<hash>.py; tracebacks read them
                  f"{tempfile.gettempdir()}/ipykernel_{os.getpid()}",
                  f"{home}/.fonts", f"{home}/.local/share/fonts",
                  # matplotlib's first font-cache build (fresh HOME) lists these system font folders
                  "/usr/X11R6/lib/X11/fonts", "/usr/X11/lib/X11/fonts", "/usr/local/share/fonts", "/opt/X11/share/fonts",
                  "/usr/openwin/lib/X11/fonts", "/Library/Fonts", "/System/Library/Fonts", "/Network/Library/Fonts"})
    return sorted(r for r in roots if r)


def _library_write_roots() -> list[str]:
    """Cache folders libraries write on first use (matplotlib's font cache)."""
    home = os.path.expanduser("~")
    cache = os.environ.get("XDG_CACHE_HOME") or f"{home}/.cache"
    config = os.environ.get("XDG_CONFIG_HOME") or f"{home}/.config"
    roots = [f"{cache}/matplotlib", f"{config}/matplotlib"]
    if os.environ.get("MPLCONFIGDIR"):
        roots.append(os.environ["MPLCONFIGDIR"])
    return roots


class _Policy:
    """Decides one audit event for agent code; raises PermissionError to block it."""

    def __init__(self, paths: _Paths, getframe: Callable[..., Any]) -> None:
        self.paths = paths
        self.getframe = getframe
        self.exec_path = os.get_exec_path
        self.handlers: dict[str, Callable[[str, tuple], None]] = {
            "open": self.on_open,
            "os.listdir": self.on_read_path, "os.scandir": self.on_read_path, "os.walk": self.on_read_path,
            "glob.glob": self.on_read_path, "glob.glob/2": self.on_read_path, "os.chdir": self.on_read_path,
            "os.remove": self.on_write_path, "os.rmdir": self.on_write_path, "os.truncate": self.on_write_path,
            "os.chmod": self.on_write_path, "os.chown": self.on_write_path, "os.utime": self.on_write_path,
            "os.mkdir": self.on_mkdir, "shutil.rmtree": self.on_write_path, "shutil.chown": self.on_write_path,
            "os.rename": self.on_write_both, "os.link": self.on_write_both, "os.symlink": self.on_symlink,
            "shutil.copyfile": self.on_copy, "shutil.copymode": self.on_copy, "shutil.copystat": self.on_copy,
            "shutil.copytree": self.on_copy, "shutil.move": self.on_write_both,
            "shutil.make_archive": self.on_block, "shutil.unpack_archive": self.on_block,
            "tempfile.mkstemp": self.on_write_path, "tempfile.mkdtemp": self.on_write_path,
            "sqlite3.connect": self.on_write_path, "subprocess.Popen": self.on_popen,
            "ctypes.dlopen": self.on_dlopen, "ctypes.dlsym": self.on_dlsym,
            "os.putenv": self.on_putenv, "os.unsetenv": self.on_putenv,
        }

    def decide(self, event: str, args: tuple) -> None:
        handler = self.handlers.get(event)
        if handler is not None:
            handler(event, args)
        elif event in _ALWAYS_BLOCKED or event in _PROCESS_EVENTS:
            raise _blocked(event, "not allowed in agent code")
        elif event.startswith(_NETWORK_PREFIXES):
            raise _blocked(event, f"network access is not allowed ({args[1:2] or args[:1]})")

    def on_open(self, event: str, args: tuple) -> None:
        path, mode, flags = (tuple(args) + (None, None))[:3]
        write = bool(flags & _WRITE_FLAGS) if isinstance(flags, int) else any(c in (mode or "") for c in "wax+")
        self.paths.check(event, path, write)

    def on_read_path(self, event: str, args: tuple) -> None:
        if args and isinstance(args[0], (str, bytes, os.PathLike)):
            target = args[0] if event != "os.chdir" else args[0]
            self.paths.check(event, target, write=event == "os.chdir")

    def on_write_path(self, event: str, args: tuple) -> None:
        if args and args[0] not in (":memory:", b":memory:", ""):
            self.paths.check(event, args[0], write=True)

    def on_mkdir(self, event: str, args: tuple) -> None:
        full = self.paths.resolve(args[0])
        if any(root.startswith(full.rstrip("/") + "/") for root in self.paths.write_roots):
            return   # creating a parent of a library cache folder (first matplotlib import)
        self.paths.check(event, args[0], write=True)

    def on_write_both(self, event: str, args: tuple) -> None:
        for path in args[:2]:
            self.paths.check(event, path, write=True)

    def on_symlink(self, event: str, args: tuple) -> None:
        self.paths.check(event, args[1], write=True)
        # a link inside the workspace pointing out would turn later reads into reads elsewhere
        self.paths.check(event, posixpath.join(posixpath.dirname(self.paths.resolve(args[1])), os.fsdecode(args[0])),
                         write=True)

    def on_copy(self, event: str, args: tuple) -> None:
        self.paths.check(event, args[0], write=False)
        self.paths.check(event, args[1], write=True)

    def on_block(self, event: str, args: tuple) -> None:
        raise _blocked(event, "not allowed in agent code")

    def on_popen(self, event: str, args: tuple) -> None:
        executable, argv, cwd, env = (tuple(args) + (None,) * 4)[:4]
        argv_tuple = (argv,) if isinstance(argv, (str, bytes)) else tuple(argv or ())
        if argv_tuple in ALLOWED_COMMANDS and cwd is None and env is None and self._system_program(argv_tuple[0]):
            return
        raise _blocked(event, f"starting processes is not allowed ({argv_tuple!r})")

    def _system_program(self, name: str) -> bool:
        for folder in self.exec_path():
            candidate = self.paths.resolve(folder + "/" + name)
            if os.access(candidate, os.X_OK):
                return candidate.startswith(("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"))
        return False

    def on_dlopen(self, event: str, args: tuple) -> None:
        name = args[0] if args else None
        if name is None or (isinstance(name, (str, bytes)) and "/" not in os.fsdecode(name)):
            return   # the main program / a system library by soname: only allow-listed symbols are reachable
        full = self.paths.resolve(name)
        if self.paths._under(full, self.paths.write_roots) or not self.paths._under(full, self.paths.read_roots):
            raise _blocked(event, f"loading native code from {full} is not allowed")

    def on_dlsym(self, event: str, args: tuple) -> None:
        name = args[1] if len(args) > 1 else ""
        name = name if isinstance(name, str) else os.fsdecode(name) if isinstance(name, bytes) else ""
        if not (name in _SAFE_SYMBOLS or name.startswith(_SAFE_SYMBOL_PREFIXES)):
            raise _blocked(event, f"native symbol {name!r} is not allowed")

    def on_putenv(self, event: str, args: tuple) -> None:
        key = os.fsdecode(args[0]) if args else ""
        if key.upper().startswith(_ENV_NAMES_DENIED):
            raise _blocked(event, f"changing {key} is not allowed")


class _Controller:
    """Which threads are guarded right now; the only writer of that state."""

    def __init__(self, policy: _Policy) -> None:
        self.policy = policy
        self.get_ident = _thread.get_ident
        self.stack: list[tuple[int, bool, object]] = []   # (thread ident, agent?, token)
        self.guarded: frozenset[int] = frozenset()
        self.agent_threads: set[int] = set()   # threads started by guarded code, while they run
        self.armed = [False]         # the hook's fast path reads only this
        self.locked_ident: int | None = None   # set when tampering was seen: that thread stays guarded
        self.blocks: list[str] = []

    def _refresh(self) -> None:
        idents = {ident for ident, agent, _ in self.stack if agent}
        if self.locked_ident is not None:
            idents.add(self.locked_ident)
        self.guarded = frozenset(idents)
        self.armed[0] = bool(self.guarded or self.agent_threads)

    def enter(self, agent: bool) -> object:
        token = object()
        self.stack.append((self.get_ident(), agent, token))
        self._refresh()
        return token

    def exit(self, token: object) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][2] is token:
                del self.stack[index]
                break
        self._refresh()

    def exit_last(self) -> bool:
        """Pop the innermost cell entry of this thread; True if it was an agent cell."""
        ident = self.get_ident()
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == ident:
                agent = self.stack[index][1]
                del self.stack[index]
                self._refresh()
                return agent
        return False

    def is_guarded(self, ident: int) -> bool:
        return ident in self.guarded or ident in self.agent_threads

    def wrap_thread_start(self, start: Callable[..., int]) -> Callable[..., int]:
        """A ``_thread.start_new_thread`` that marks threads started by guarded code as guarded.

        Python 3.11 raises no audit event for thread creation, so the starter itself is wrapped.
        """
        controller = self

        def start_new_thread(function: Callable[..., Any], args: tuple = (), kwargs: dict | None = None) -> int:
            if not controller.is_guarded(controller.get_ident()):
                return start(function, args, kwargs or {})

            def guarded_thread(*a: Any, **k: Any) -> Any:
                ident = controller.get_ident()
                controller.agent_threads.add(ident)
                controller._refresh()
                try:
                    return function(*a, **k)
                finally:
                    controller.agent_threads.discard(ident)
                    controller._refresh()

            return start(guarded_thread, args, kwargs or {})

        return start_new_thread

    def make_hook(self) -> Callable[[str, tuple], None]:
        armed, get_ident, is_guarded, decide, blocks = (
            self.armed, self.get_ident, self.is_guarded, self.policy.decide, self.blocks)

        def taskweaver_lab_audit_hook(event: str, args: tuple) -> None:
            if not armed[0]:
                return                     # fast path: no agent code anywhere in the process
            if not is_guarded(get_ident()):
                return
            try:
                decide(event, args)
            except PermissionError as exc:
                blocks.append(str(exc))
                raise

        return taskweaver_lab_audit_hook


_agent_enter: Callable[[], object] | None = None
_agent_exit: Callable[[object], None] | None = None


def install(workspace: str, extra_read_roots: list[str] | None = None) -> None:
    """Install the audit hook once per process and hook it to IPython's cell events if present."""
    global _agent_enter, _agent_exit
    if getattr(sys, _MARK, False):
        return
    write_roots = _library_write_roots()
    paths = _Paths(workspace, _default_read_roots() + list(extra_read_roots or []), write_roots)
    controller = _Controller(_Policy(paths, sys._getframe))
    sys.addaudithook(controller.make_hook())
    threading._start_new_thread = controller.wrap_thread_start(_thread.start_new_thread)  # type: ignore[attr-defined]
    _thread.start_new_thread = threading._start_new_thread  # type: ignore[attr-defined]
    setattr(sys, _MARK, True)
    _agent_enter = lambda: controller.enter(True)   # noqa: E731 (closures keep the controller private)
    _agent_exit = controller.exit
    _connect_ipython(controller)


@contextlib.contextmanager
def agent_context() -> Iterator[None]:
    """Guard active inside (in-process agent execution, e.g. the magic without a server)."""
    if _agent_enter is None or _agent_exit is None:
        raise RuntimeError("taskweaver_lab guard: call install(workspace) first")
    token = _agent_enter()
    try:
        yield
    finally:
        _agent_exit(token)


def _connect_ipython(controller: _Controller) -> None:
    ipython = sys.modules.get("IPython")  # the kernel's own; kernel-side code imports only the stdlib
    if ipython is None:
        return
    shell = ipython.get_ipython()
    kernel = getattr(shell, "kernel", None)
    if shell is None or kernel is None:
        return   # plain IPython / no kernel: only agent_context() switches the guard on
    get_parent = kernel.get_parent             # captured: later patches of the kernel don't affect us
    original = type(kernel).get_parent
    getframe, stderr = sys._getframe, sys.stderr

    def is_agent_request() -> bool:
        metadata = (get_parent() or {}).get("metadata") or {}
        marker = metadata.get("taskweaver_lab") or {}
        return isinstance(marker, dict) and marker.get("agent") is True

    def tampered() -> bool:
        callbacks = shell.events.callbacks
        return (type(kernel).get_parent is not original or "get_parent" in vars(kernel)
                or "set_parent" in vars(kernel) or pre not in callbacks.get("pre_execute", ())
                or post not in callbacks.get("post_execute", ()))

    def from_ipython(depth: int) -> bool:
        code = getframe(depth).f_code
        return (code.co_name in ("do_execute", "run_cell")
                and code.co_filename.endswith(("ipykernel/ipkernel.py", "IPython/core/interactiveshell.py")))

    def pre() -> None:
        controller.enter(is_agent_request() or controller.locked_ident is not None)

    def post() -> None:
        if not from_ipython(3):            # called by anything but IPython itself: refuse, stay on
            controller.locked_ident = controller.get_ident()
            controller._refresh()
            return
        was_agent = controller.exit_last()
        if was_agent and tampered():
            controller.locked_ident = controller.get_ident()
            controller._refresh()
            print("taskweaver_lab guard: tampering detected; the guard now stays on for every cell of this "
                  "kernel. Restart the kernel to reset it.", file=stderr)
        if was_agent and controller.blocks:
            print(f"taskweaver_lab guard blocked {len(controller.blocks)} operation(s) in this agent cell:\n  "
                  + "\n  ".join(controller.blocks[:5]), file=stderr)
        if not controller.stack:
            controller.blocks.clear()

    shell.events.register("pre_execute", pre)
    shell.events.register("post_execute", post)
