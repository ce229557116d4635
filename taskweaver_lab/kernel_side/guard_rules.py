"""Rules of the kernel-side guard: which paths agent code may read and write, which audit events it may raise.

STDLIB ONLY. Shipped into the kernel together with ``guard.py`` as ONE private module
(``guard.shipped_source()``: this file first); nothing here runs until ``guard.install``.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import stat as _stat
import sys
import tempfile
from typing import Any, Callable
from urllib.parse import unquote as _unquote

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
# Files a later trusted step would execute or trust: modules (a .py next to the notebook shadows a library),
# native code, .pth, the notebook record, tools' settings (hidden files and folders, config files by name).
_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyw", ".pth", ".so", ".pyd", ".ipynb", ".mplstyle")
_CONFIG_NAMES = ("matplotlibrc",)
_CONFIG_PREFIXES = ("jupyter_", "ipython_", "jupyter-")
_HELPER_MODULE = "_taskweaver_lab_kernel"


def _blocked(event: str, detail: Any) -> PermissionError:
    return PermissionError(f"taskweaver_lab guard blocked {event}: {str(detail)[:200]}")


class _Paths:
    """Resolves paths with C functions captured at install, so patched ``os`` functions can't lie."""

    def __init__(self, workspace: str, read_roots: list[str], write_roots: list[str], protected: list[str]) -> None:
        self._lstat, self._readlink, self._getcwd = os.lstat, os.readlink, os.getcwd
        self._fsdecode, self._is_link, self._unquote = os.fsdecode, _stat.S_ISLNK, _unquote
        self.workspace = self.resolve(workspace)
        self.write_roots = tuple({self.resolve(p) for p in [workspace, *write_roots]})
        self.read_roots = tuple({self.resolve(p) for p in [*self.write_roots, *read_roots]})
        self.library_roots = tuple(r for r in self.read_roots if r != self.workspace)
        self.own_roots = tuple(r for r in self.write_roots if r != self.workspace)
        self.cell_dirs = tuple(r for r in self.read_roots if r.rsplit("/", 1)[-1].startswith("ipykernel_"))
        self.protected = tuple({self.resolve(p) for p in protected if p})
        self.code_suffixes, self.config_names, self.config_prefixes = _CODE_SUFFIXES, _CONFIG_NAMES, _CONFIG_PREFIXES

    def resolve(self, path: Any) -> str:
        """Absolute, normalized, symlinks resolved (as far as they exist); a ``file:`` URI is its path."""
        text = path if isinstance(path, str) else self._fsdecode(path)
        if text.startswith("file:"):   # sqlite3/pandas URIs: file:/abs, file:///abs, file:rel?mode=ro
            text = self._unquote(text[5:].split("?", 1)[0].split("#", 1)[0])
            text = "/" + text[2:].split("/", 1)[-1] if text.startswith("//") else text
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

    def _inside(self, full: str, roots: tuple[str, ...]) -> str | None:
        """``full`` relative to the first of ``roots`` holding it (None: outside all)."""
        for root in roots:
            if full == root or full.startswith(root.rstrip("/") + "/"):
                return full[len(root):]
        return None

    def check(self, event: str, path: Any, write: bool) -> None:
        if isinstance(path, int) or path is None:
            return   # an already-open descriptor, or "no path" (e.g. a pipe)
        full = self.resolve(path)
        name = full.rsplit("/", 1)[-1]
        if write and (name.endswith(self.code_suffixes) or name in self.config_names or (
                name.startswith(self.config_prefixes) and name.endswith(("config.py", "config.json")))):
            raise _blocked(event, f"writing {full}: code, notebooks and settings files can't be written by agent "
                                  "code (a later step would run or trust them); save data as csv, json, txt or png")
        if self._inside(full, self.own_roots if write else self.own_roots + self.cell_dirs) is not None:
            return   # library caches, MPLCONFIGDIR, the private temp folder (may sit in a protected folder)
        if not write and self._inside(full, self.library_roots) is not None and not self._under(full, self.protected):
            return
        rel = self._inside(full, (self.workspace,))
        if rel is None:
            where = "outside the workspace" if write else "outside the workspace and library folders"
            raise _blocked(event, f"{'writing' if write else 'reading'} {full} ({where} {self.workspace})")
        if any(part.startswith(".") for part in rel.split("/")) or self._under(full, self.protected):
            raise _blocked(event, f"{full}: hidden files and folders hold settings and credentials")


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
                  "/usr/openwin/lib/X11/fonts", "/Library/Fonts", "/System/Library/Fonts", "/Network/Library/Fonts",
                  # system data files libraries read (mimetypes: openpyxl's to_excel)
                  "/etc/mime.types", "/etc/httpd/mime.types", "/etc/apache2/mime.types", "/usr/local/etc/mime.types"})
    return sorted(r for r in roots if r)


def _protected_dirs() -> list[str]:
    """Where Jupyter, IPython and their kernels keep config, startup code, kernelspecs and connection files."""
    home, env = os.path.expanduser("~"), os.environ
    found = [env.get(name, "") for name in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
                                             "JUPYTER_RUNTIME_DIR")]
    found += env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) + env.get("JUPYTER_PATH", "").split(os.pathsep)
    found += [f"{home}/.ipython", f"{home}/.jupyter", f"{home}/.local/share/jupyter", f"{home}/.config/ipython"]
    return [d for d in found if d.startswith("/")]


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
        self.exec_path, self.access, self.decode = os.get_exec_path, os.access, os.fsdecode
        # copies taken at install: later changes to this module's globals change nothing
        self.blocked = frozenset(_ALWAYS_BLOCKED | _PROCESS_EVENTS)
        self.network, self.write_flags, self.env_denied = _NETWORK_PREFIXES, _WRITE_FLAGS, _ENV_NAMES_DENIED
        self.commands, self.symbols, self.symbol_prefixes = ALLOWED_COMMANDS, _SAFE_SYMBOLS, _SAFE_SYMBOL_PREFIXES
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
        elif event in self.blocked:
            raise _blocked(event, "not allowed in agent code")
        elif event.startswith(self.network):
            raise _blocked(event, f"network access is not allowed ({args[1:2] or args[:1]})")

    def on_open(self, event: str, args: tuple) -> None:
        path, mode, flags = (tuple(args) + (None, None))[:3]
        write = bool(flags & self.write_flags) if isinstance(flags, int) else any(c in (mode or "") for c in "wax+")
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
        if argv_tuple in self.commands and cwd is None and env is None and self._system_program(
                [f + "/" + argv_tuple[0] for f in self.exec_path()]):
            return
        raise _blocked(event, f"starting processes is not allowed ({argv_tuple!r})")

    def on_fork_exec(self, args: tuple) -> None:
        """``_posixsubprocess.fork_exec`` raises no audit event: the same rule as ``subprocess.Popen``."""
        args = tuple(args) + (None,) * 6
        argv = tuple(self.decode(a) for a in args[0] or ()) if isinstance(args[0], (list, tuple)) else (args[0],)
        if argv in self.commands and args[4] is None and args[5] is None and self._system_program(
                [self.decode(e) for e in args[1] or ()]):
            return
        raise _blocked("_posixsubprocess.fork_exec", f"starting processes is not allowed ({argv!r})")

    def _system_program(self, candidates: list[str]) -> bool:
        for candidate in candidates:
            candidate = self.paths.resolve(candidate)
            if self.access(candidate, os.X_OK):
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
        if not (name in self.symbols or name.startswith(self.symbol_prefixes)):
            raise _blocked(event, f"native symbol {name!r} is not allowed")

    def on_putenv(self, event: str, args: tuple) -> None:
        key = os.fsdecode(args[0]) if args else ""
        if key.upper().startswith(self.env_denied):
            raise _blocked(event, f"changing {key} is not allowed")


