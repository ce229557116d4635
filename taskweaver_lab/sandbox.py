"""Layer 4 (optional): an OS sandbox around the agent kernel (``--TaskWeaverLab.sandbox=landlock``).

``python -m taskweaver_lab.sandbox --workspace DIR [--read-root DIR ...] -- <ipykernel argv>`` is a kernel
launcher. Before the kernel runs one line of Python it applies, in this order:

1. ``prctl(PR_SET_NO_NEW_PRIVS)`` (required by both mechanisms, inherited across exec);
2. **Landlock** (filesystem, TCP, scopes) in the launcher itself, then ``execv`` of the interpreter. The
   domain is inherited across exec and by every thread and child. Allowed: read+write (no execute) under the
   workspace and a private state dir (``TMPDIR``, ``IPYTHONDIR``, ``MPLCONFIGDIR``; no symlinks, FIFOs, sockets); read+execute under the
   Python prefixes and import-path folders, ``/usr``, ``/lib*``, ``/opt/conda``-style prefixes; read of a few
   named files in ``/etc`` (``ld.so.cache``, fonts, time zone, passwd...), ``/proc/self``, CPU topology in
   ``/sys``; read+write of ``/dev/null``, read of ``/dev/urandom``; the connection file (read) and socket
   creation in its folder. Nothing else: not ``$HOME``, not the server's runtime dir (other kernels' keys),
   not the shared ``/tmp``. With ABI >= 4 TCP bind/connect is denied outright; with ABI >= 6 signals to
   processes outside the sandbox (the Jupyter server has the same uid) and abstract unix sockets are scoped.
3. **seccomp** in a bootstrap *inside* the new interpreter (``python -c BOOTSTRAP``), so our own exec of the
   interpreter still works, then ``runpy`` runs ``ipykernel_launcher``. The filter (classic BPF, built here by
   hand) denies with EPERM: ``execve``/``execveat``; ``fork``/``vfork`` and ``clone`` without ``CLONE_THREAD``
   (threads only: a forked copy of the kernel would outlive its shutdown, orphaned, still running agent code);
   ``socket`` of any family but ``AF_UNIX`` stream/seqpacket (netlink gets EOPNOTSUPP, which libzmq tolerates);
   ``connect`` (a kernel only binds and accepts); ``io_uring_*`` (io_uring does socket/connect/open without
   syscalls seccomp can see); ``ptrace``, ``process_vm_*``, ``bpf``, ``perf_event_open``, ``userfaultfd``,
   ``keyctl``/``add_key``/``request_key``, ``unshare``/``setns``/``mount``/``umount2``/``pivot_root``/``chroot``,
   module loading, ``open_by_handle_at``/``name_to_handle_at``, ``ioctl(TIOCSTI)``; ``clone3`` gets ENOSYS
   (its flags live in memory seccomp cannot read; glibc falls back to ``clone``). Foreign architectures
   (i386 via ``int 0x80``) kill the process; x32 system calls are denied.

Why IPC transport: jupyter's default TCP transport needs ``AF_INET`` sockets on 127.0.0.1 for the kernel's own
channels, and seccomp cannot tell loopback from the internet (``sockaddr`` is a pointer it cannot read). Binding
the five TCP sockets before the filter is racy (ipykernel's heartbeat binds from its own thread) and would
still leave ``connect`` to loopback services open. With ``transport="ipc"`` the channels are unix sockets the
kernel binds in a private folder, so *all* inet sockets and *all* ``connect`` calls can be denied.
``sandboxed_kernel_manager`` sets that up (absolute ``ip`` next to an explicit connection file, which is what
made IPC fail when the kernel's cwd differed from the connection file's folder: jupyter_client's default ``ip``
for IPC is the relative ``kernel-ipc`` unless the connection file is known first). In a Jupyter server,
``sandbox_kernelspec.py`` does the same for every kernel of the ``taskweaver-sandbox`` kernelspec.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from .steps import TaskWeaverLabError

# --- Landlock ---------------------------------------------------------------------------------------------
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446  # all arches
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
FS_MAKE_SYM, FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV  # valid on non-directories
READ = FS_READ_FILE | FS_READ_DIR
READ_EXEC = READ | FS_EXECUTE
# No EXECUTE, no device nodes; no symlinks, FIFOs or sockets either: a link planted in the workspace pointing at
# ~/.ssh would be followed by the *user's* unsandboxed code or the file browser later, a FIFO would hang them.
READ_WRITE = (READ | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG | FS_REFER
              | FS_TRUNCATE)

# /etc is not granted whole: as root (containers) it holds /etc/shadow, ssh host keys, credentials.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "fonts", "passwd", "group",
             "nsswitch.conf", "host.conf", "hosts", "mime.types", "os-release", "locale.alias", "locale.conf",
             "matplotlibrc", "gai.conf", "resolv.conf", "ssl/openssl.cnf")
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/opt", "/sys/devices/system/cpu",
               "/sys/fs/cgroup", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when absent, disabled, or not Linux)."""
    if sys.platform != "linux":
        return 0
    abi = _libc().syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                          ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return max(int(abi), 0)


def check_support() -> int:
    """Raise a clear error unless this machine can run a sandboxed kernel; returns the Landlock ABI."""
    abi = landlock_abi()
    problem = unsupported_reason(abi, ctypes.get_errno() if abi < 1 else 0, platform.machine())
    if problem:
        raise TaskWeaverLabError(problem)
    return abi


def unsupported_reason(abi: int, errno: int, machine: str) -> str:
    """Why a machine with this Landlock ABI (and the errno of asking for it) cannot sandbox, or ""."""
    if abi < 1:
        why = {38: "no landlock syscalls (ENOSYS)", 95: "Landlock built in but disabled (EOPNOTSUPP: add 'landlock'"
               " to the lsm= boot parameter)", 1: "the syscall is blocked (EPERM: a container seccomp profile?)"}
        return ("sandbox=landlock needs Linux >= 5.13 with Landlock enabled; this kernel reports "
                f"{platform.system()} {platform.release()} on {machine}, "
                f"{why.get(errno, f'Landlock ABI unavailable (errno {errno})')}. "
                "Use --TaskWeaverLab.sandbox=none, or run on a kernel with Landlock.")
    if machine != "x86_64":
        return (f"sandbox=landlock's seccomp filter is written for x86_64; this machine is {machine}. "
                "Use --TaskWeaverLab.sandbox=none here.")
    return ""


def _handled_fs(abi: int) -> int:
    handled = (1 << 13) - 1  # ABI 1: EXECUTE..MAKE_SYM
    if abi >= 2:
        handled |= FS_REFER
    if abi >= 3:
        handled |= FS_TRUNCATE
    if abi >= 5:
        handled |= FS_IOCTL_DEV
    return handled


def apply_landlock(rules: Iterable[tuple[str, int]], abi: int | None = None) -> int:
    """Restrict this (single-threaded) process to ``rules`` (path, access); returns the ABI used.

    Paths that do not exist are skipped; rights the ABI does not know are dropped; a file gets only file rights.
    """
    abi = landlock_abi() if abi is None else abi
    if abi < 1:
        check_support()
    libc = _libc()
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    fd = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path, access in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                allowed = access & handled
                if not os.path.isdir(path):
                    allowed &= FILE_RIGHTS
                rule = _PathBeneathAttr(allowed, pfd)
                if libc.syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(fd), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(pfd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)
    return abi


# --- seccomp (x86_64) -------------------------------------------------------------------------------------
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
EPERM, ENOSYS, EOPNOTSUPP = 1, 38, 95
AF_NETLINK = 16
AF_UNIX, SOCK_STREAM, SOCK_SEQPACKET, SOCK_TYPE_MASK = 1, 1, 5, 0xF
TIOCSTI = 0x5412
CLONE_THREAD = 0x00010000
NR = {"clone": 56, "fork": 57, "vfork": 58, "socket": 41, "connect": 42, "execve": 59, "ioctl": 16, "execveat": 322, "clone3": 435,
      "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321, "perf_event_open": 298,
      "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249, "unshare": 272, "setns": 308,
      "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "init_module": 175, "finit_module": 313,
      "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "open_by_handle_at": 304,
      "name_to_handle_at": 303, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
      "fsopen": 430, "fsmount": 432, "open_tree": 428, "move_mount": 429, "reboot": 169, "swapon": 167,
      "swapoff": 168, "acct": 163, "quotactl": 179}
DENIED = tuple(n for n in NR if n not in ("socket", "ioctl", "clone3", "clone"))

# BPF opcodes: ld w abs, jeq k, jge k, jset k, and k, ret k
_LD, _JEQ, _JGE, _JSET, _AND, _RET = 0x20, 0x15, 0x35, 0x45, 0x54, 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARG0, _OFF_ARG1 = 0, 4, 16, 24  # struct seccomp_data (args are 64-bit, little endian)


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def seccomp_program() -> bytes:
    """The classic-BPF filter described in the module docstring, as bytes of ``struct sock_filter``."""
    prog: list[bytes] = []
    body: list[tuple[int, int, str, str]] = []  # (code, k, true-label, false-label); labels: next/ALLOW/DENY/...
    body.append((_LD, _OFF_ARCH, "", ""))
    body.append((_JEQ, AUDIT_ARCH_X86_64, "next", "KILL"))
    body.append((_LD, _OFF_NR, "", ""))
    body.append((_JGE, X32_SYSCALL_BIT, "DENY", "next"))
    body.append((_JEQ, NR["clone3"], "NOSYS", "next"))
    for name in DENIED:
        body.append((_JEQ, NR[name], "DENY", "next"))
    body.append((_JEQ, NR["clone"], "CLONE", "next"))
    body.append((_JEQ, NR["socket"], "SOCKET", "next"))
    body.append((_JEQ, NR["ioctl"], "IOCTL", "ALLOW"))
    labels_at: dict[str, int] = {}
    extra = {
        # netlink gets EOPNOTSUPP: libzmq aborts when getifaddrs() fails with anything but EINVAL/EOPNOTSUPP
        "SOCKET": [(_LD, _OFF_ARG0, "", ""), (_JEQ, AF_NETLINK, "NOTSUP", "next"), (_JEQ, AF_UNIX, "next", "DENY"), (_LD, _OFF_ARG1, "", ""),
                   (_AND, SOCK_TYPE_MASK, "", ""), (_JEQ, SOCK_STREAM, "ALLOW", "next"),
                   (_JEQ, SOCK_SEQPACKET, "ALLOW", "DENY")],
        # threads only: a forked copy of the kernel outlives its shutdown (orphaned, still running agent code)
        "CLONE": [(_LD, _OFF_ARG0, "", ""), (_JSET, CLONE_THREAD, "ALLOW", "DENY")],
        "IOCTL": [(_LD, _OFF_ARG1, "", ""), (_JEQ, TIOCSTI, "DENY", "ALLOW")],
    }
    flat: list[tuple[int, int, str, str]] = list(body)
    for label, insns in extra.items():
        labels_at[label] = len(flat)
        flat.extend(insns)
    for label, ret in (("ALLOW", SECCOMP_RET_ALLOW), ("DENY", SECCOMP_RET_ERRNO | EPERM),
                       ("NOSYS", SECCOMP_RET_ERRNO | ENOSYS),
                       ("NOTSUP", SECCOMP_RET_ERRNO | EOPNOTSUPP), ("KILL", SECCOMP_RET_KILL_PROCESS)):
        labels_at[label] = len(flat)
        flat.append((_RET, ret, "", ""))
    for i, (code, k, t, f) in enumerate(flat):
        def rel(label: str) -> int:
            if label in ("", "next"):
                return 0
            offset = labels_at[label] - i - 1
            assert 0 <= offset < 256, (label, offset)
            return offset
        prog.append(_insn(code, k, rel(t), rel(f)))
    return b"".join(prog)


# Runs as ``python -c BOOTSTRAP <hex filter> <ipykernel args...>`` inside the sandboxed interpreter: stdlib
# only (the taskweaver_lab package itself need not be readable there), single-threaded, before ipykernel.
BOOTSTRAP = """\
import ctypes, sys
def _twl_seccomp(hex_prog):
    prog = bytes.fromhex(hex_prog)
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
        sys.stderr.write("taskweaver_lab sandbox: seccomp failed (errno %d); not starting the kernel\\n"
                         % ctypes.get_errno())
        raise SystemExit(70)
_twl_seccomp(sys.argv[1])
del _twl_seccomp, ctypes
import warnings  # expected under the sandbox (no TCP): ipykernel's pipe for forked children's output
warnings.filterwarnings("ignore", message="Couldn't bind IOPub Pipe")
sys.argv = ["ipykernel_launcher"] + sys.argv[2:]
import runpy
runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
"""


# --- the launcher -----------------------------------------------------------------------------------------
def _connection_file(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg in ("-f", "--f") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(("-f=", "--f=")):
            return arg.split("=", 1)[1]
    raise TaskWeaverLabError("The sandbox launcher needs the kernel's '-f <connection file>' argument.")


def _python_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    try:
        import site
        roots.update(site.getsitepackages() + [site.getusersitepackages()])
    except Exception:
        pass
    roots.update(p for p in sys.path if os.path.isabs(p) and p.endswith(("site-packages", "dist-packages", ".zip")))
    return sorted(r for r in roots if r)


def _matplotlib_cache() -> Path:
    if os.environ.get("MPLCONFIGDIR"):
        return Path(os.environ["MPLCONFIGDIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matplotlib"


def prepare_state(state_dir: Path, env: dict[str, str]) -> None:
    """Private, writable homes for what a kernel writes outside the workspace (instead of $HOME and /tmp)."""
    for sub in ("tmp", "ipython", "mpl", "jupyter", "cache"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    try:  # matplotlib's font list: copy it so every sandboxed kernel does not rebuild it (~1 s)
        for cached in _matplotlib_cache().glob("fontlist-*.json"):
            shutil.copy2(cached, state_dir / "mpl" / cached.name)
    except OSError:
        pass
    env.update(TMPDIR=str(state_dir / "tmp"), IPYTHONDIR=str(state_dir / "ipython"),
               MPLCONFIGDIR=str(state_dir / "mpl"), JUPYTER_RUNTIME_DIR=str(state_dir / "jupyter"),
               JUPYTER_CONFIG_DIR=str(state_dir / "jupyter"), JUPYTER_DATA_DIR=str(state_dir / "jupyter"),
               XDG_CACHE_HOME=str(state_dir / "cache"), JUPYTER_PLATFORM_DIRS="1",
               TASKWEAVER_LAB_SANDBOX="landlock",
               JOBLIB_MULTIPROCESSING="0")  # no /dev/shm semaphores in the sandbox: serial, without a warning


def sandbox_rules(workspace: str, read_roots: Sequence[str], connection_file: str, state_dir: str) -> list[tuple[str, int]]:
    info = json.loads(Path(connection_file).read_text())
    if info.get("transport", "tcp") != "ipc":
        raise TaskWeaverLabError(
            "A sandboxed kernel needs transport='ipc' (the sandbox denies inet sockets, and jupyter's TCP transport "
            "needs them for the kernel's own channels); start it with taskweaver_lab.sandbox.sandboxed_kernel_manager.")
    socket_dir = os.path.dirname(os.path.abspath(info["ip"]))
    rules: list[tuple[str, int]] = [(p, READ_EXEC) for p in _python_roots()]
    rules += [(p, READ_EXEC) for p in SYSTEM_READ]
    rules += [(os.path.join("/etc", name), READ) for name in ETC_FILES]
    rules += [(p, READ) for p in read_roots]
    rules += [("/proc/self", READ), ("/dev/urandom", FS_READ_FILE), ("/dev/random", FS_READ_FILE),
              ("/dev/zero", FS_READ_FILE), ("/dev/null", FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE)]
    rules += [(connection_file, FS_READ_FILE), (socket_dir, FS_MAKE_SOCK)]  # ipykernel binds <ip>-<port> there
    rules += [(workspace, READ_WRITE), (state_dir, READ_WRITE)]
    return rules


def default_state_dir(connection_file: str) -> str:
    """Where a kernel started without ``--state-dir`` keeps its state: next to its connection file (the
    server's runtime dir), one per kernel. The server removes it when the kernel goes (sandbox_kernelspec.py)."""
    return os.path.splitext(os.path.realpath(connection_file))[0] + "-sandbox"


def launch(workspace: str, read_roots: Sequence[str], kernel_argv: Sequence[str], state_dir: str | None = None) -> None:
    """Apply Landlock here, then exec the interpreter with the seccomp bootstrap; does not return."""
    abi = check_support()
    workspace = os.path.realpath(workspace)
    if not os.path.isdir(workspace):
        raise TaskWeaverLabError(f"The sandbox workspace {workspace} is not a folder.")
    connection_file = os.path.realpath(_connection_file(kernel_argv))
    state = Path(state_dir or default_state_dir(connection_file))
    state.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ)
    prepare_state(state, env)
    rules = sandbox_rules(workspace, [os.path.realpath(r) for r in read_roots], connection_file, str(state))
    program = seccomp_program()
    args = list(kernel_argv)
    if args and os.path.basename(args[0]).startswith("python"):  # [python, -m, ipykernel_launcher, ...]
        args = args[1:]
    if args[:2] not in (["-m", "ipykernel_launcher"], ["-m", "ipykernel"]):
        raise TaskWeaverLabError(f"The sandbox launcher runs ipykernel only; got {list(kernel_argv)!r}.")
    args = args[2:]
    os.chdir(workspace)
    apply_landlock(rules, abi)
    os.execve(sys.executable, [sys.executable, "-c", BOOTSTRAP, program.hex(), *args], env)


def sandboxed_kernel_cmd(workspace: str | None, read_roots: Sequence[str] = (), state_dir: str | None = None) -> list[str]:
    """A kernelspec ``argv`` (``{connection_file}`` is filled in by jupyter_client) for a sandboxed ipykernel.

    ``workspace=None`` makes the kernel's working directory the workspace (what a Jupyter server sets to the
    notebook's folder), so one static kernelspec serves every notebook."""
    # this very file, not whatever ``taskweaver_lab`` the kernel's cwd or an editable install would resolve to
    package_parent = str(Path(__file__).resolve().parents[1])
    stub = f"import sys; sys.path.insert(0, {package_parent!r}); from taskweaver_lab.sandbox import main; main()"
    cmd = [sys.executable, "-c", stub] + (["--workspace", os.path.realpath(workspace)] if workspace else [])
    for root in read_roots:
        cmd += ["--read-root", os.path.realpath(root)]
    if state_dir:
        cmd += ["--state-dir", state_dir]
    return cmd + ["--", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def sandboxed_kernel_manager(workspace: str, read_roots: Sequence[str] = (), **kwargs: Any) -> Any:
    """A jupyter_client ``KernelManager`` that starts a sandboxed ipykernel over IPC in a private folder.

    Start it with ``manager.start_kernel(cwd=workspace, env=...)``; the folder is removed at shutdown.
    """
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import KernelManager

    check_support()
    runtime = tempfile.mkdtemp(prefix="twl-kernel-")  # 0700; short path: unix socket paths max 107 bytes
    spec = KernelSpec(argv=sandboxed_kernel_cmd(workspace, read_roots, os.path.join(runtime, "state")),
                      display_name="Python 3 (taskweaver_lab sandbox)", language="python",
                      metadata={"debugger": False})

    class SandboxedKernelManager(KernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            return spec

        async def _async_cleanup_resources(self, restart: bool = False) -> None:  # what shutdown awaits
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(runtime, ignore_errors=True)

    return SandboxedKernelManager(transport="ipc", connection_file=os.path.join(runtime, "kernel.json"),
                                  ip=os.path.join(runtime, "ipc"), **kwargs)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: python -m taskweaver_lab.sandbox [--workspace DIR] [--read-root DIR ...] "
                         "[--state-dir DIR] -- <ipykernel argv>")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m taskweaver_lab.sandbox")
    parser.add_argument("--workspace", default=os.getcwd(), help="default: the current directory")
    parser.add_argument("--read-root", action="append", default=[])
    parser.add_argument("--state-dir")
    opts = parser.parse_args(argv[:split])
    try:
        launch(opts.workspace, opts.read_root, argv[split + 1:], opts.state_dir)
    except (TaskWeaverLabError, OSError) as exc:
        sys.stderr.write(f"taskweaver_lab sandbox: {exc}\n")
        raise SystemExit(70) from exc


if __name__ == "__main__":
    main()
