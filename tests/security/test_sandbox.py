"""Layer 4: the OS sandbox (``--TaskWeaverLab.sandbox=landlock``) in a REAL ipykernel.

The kernel here has neither the verifier nor the guard: every attack goes straight to a kernel started by
``sandboxed_kernel_manager`` and must fail at the OS layer (Landlock + seccomp), with the same canaries as
the corpus (a secret file outside the workspace, a listening loopback socket, a planted server key).
"""
from __future__ import annotations

import ctypes.util
import json
import os
import platform
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from taskweaver_lab import sandbox

from .attacks import ATTACKS
from .benign import SETUP, benign_cells
from .harness import CANARY_FILE_TEXT, AgentKernel, Canaries, CellResult, fold_iopub, kernel_env

ABI = sandbox.landlock_abi()
pytestmark = pytest.mark.skipif(
    ABI < 1 or platform.machine() != "x86_64",
    reason=f"sandbox=landlock needs Linux >= 5.13 with Landlock on x86_64; this machine: {platform.system()} "
           f"{platform.release()} {platform.machine()}, Landlock ABI {ABI}")


class SandboxedKernel(AgentKernel):
    """The corpus harness's kernel, started through the sandbox launcher; no guard is installed."""

    def __init__(self, workspace: Path, read_roots: tuple[str, ...] = ()) -> None:
        started = time.monotonic()
        self.manager = sandbox.sandboxed_kernel_manager(str(workspace), read_roots)
        self.manager.start_kernel(cwd=str(workspace), env=kernel_env())
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.startup_s = time.monotonic() - started
        self.restarts = 0

    def restart(self) -> None:
        """After an attack ended the kernel (``exit()``) or made it deaf to interrupts (SIGINT ignored)."""
        self.client.stop_channels()
        self.manager.restart_kernel(now=True)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.restarts += 1

    def _collect(self, msg_id: str, timeout: float) -> CellResult:
        result, parts, deadline = CellResult(), [], time.monotonic() + timeout
        while True:
            try:
                reply = self.client.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                if not self.manager.is_alive():
                    result.error = "KernelDied: the kernel exited"
                elif time.monotonic() < deadline:
                    continue
                elif not result.timed_out:
                    result.timed_out, deadline = True, time.monotonic() + 10
                    self.manager.interrupt_kernel()
                    continue
                else:
                    result.error = "Unresponsive: interrupt ignored"
                self.restart()
                result.text = "".join(parts)
                return result
            if reply["parent_header"].get("msg_id") != msg_id:
                continue
            if fold_iopub(reply, parts, result):
                break
        self.client.get_shell_msg(timeout=10)
        result.text = "".join(parts)
        return result


@pytest.fixture(scope="module")
def boxed(canaries: Canaries) -> Iterator[SandboxedKernel]:
    kernel = SandboxedKernel(canaries.workspace)
    print(f"\nsandboxed kernel ready in {kernel.startup_s:.2f} s")
    setup = kernel.run(SETUP, agent=False)   # the user's data cell (sales.csv etc.), as in the corpus
    assert not setup.error, setup
    yield kernel
    kernel.close()


def ok(result: CellResult) -> str:
    assert not result.error and not result.timed_out, result
    return result.text


# --- pieces that need no kernel ---------------------------------------------------------------------------
def test_abi_and_clear_error_when_unsupported() -> None:
    assert sandbox.check_support() == ABI
    assert sandbox.unsupported_reason(ABI, 0, "x86_64") == ""
    disabled = sandbox.unsupported_reason(0, 95, "x86_64")
    assert disabled.startswith("sandbox=landlock needs Linux >= 5.13 with Landlock enabled; this kernel reports Linux")
    assert "add 'landlock' to the lsm= boot parameter" in disabled and "sandbox=none" in disabled
    assert "written for x86_64; this machine is aarch64" in sandbox.unsupported_reason(ABI, 0, "aarch64")


def test_seccomp_program_is_well_formed() -> None:
    prog = sandbox.seccomp_program()
    assert len(prog) % 8 == 0 and 8 < len(prog) // 8 < 4096
    import struct
    insns = [struct.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert insns[0] == (0x20, 0, 0, 4) and insns[1][3] == sandbox.AUDIT_ARCH_X86_64  # arch checked first
    for i, (code, jt, jf, _) in enumerate(insns):
        if code & 0x07 == 0x05:  # BPF_JMP: every jump lands inside the program
            assert i + 1 + max(jt, jf) < len(insns)
    assert insns[-1][0] == 0x06  # ends with a return


def _run_filter(nr: int, args: tuple[int, ...] = (0,) * 6, arch: int = sandbox.AUDIT_ARCH_X86_64) -> int:
    """A tiny classic-BPF interpreter: what the kernel would decide for this system call."""
    import struct
    prog = sandbox.seccomp_program()
    insns = [struct.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    pc = acc = 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x06:
            return k
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:
            acc &= k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        pc += 1


def test_seccomp_decisions() -> None:
    allow, eperm = sandbox.SECCOMP_RET_ALLOW, sandbox.SECCOMP_RET_ERRNO | 1
    nr = sandbox.NR
    assert _run_filter(0) == allow                                           # read
    assert _run_filter(nr["execve"]) == _run_filter(nr["execveat"]) == eperm
    assert _run_filter(nr["connect"]) == _run_filter(nr["io_uring_setup"]) == _run_filter(nr["ptrace"]) == eperm
    assert _run_filter(nr["socket"], (2, 1, 0, 0, 0, 0)) == eperm            # AF_INET stream
    assert _run_filter(nr["socket"], (10, 2, 0, 0, 0, 0)) == eperm           # AF_INET6 datagram
    assert _run_filter(nr["socket"], (1, 1 | 0x80000, 0, 0, 0, 0)) == allow  # AF_UNIX stream, SOCK_CLOEXEC
    assert _run_filter(nr["socket"], (1, 2, 0, 0, 0, 0)) == eperm            # AF_UNIX datagram (sendto a path)
    assert _run_filter(nr["socket"], (16, 3, 0, 0, 0, 0)) == sandbox.SECCOMP_RET_ERRNO | 95  # netlink
    assert _run_filter(nr["clone"], (0x3D0F00, 0, 0, 0, 0, 0)) == allow      # pthread_create's flags
    assert _run_filter(nr["clone"], (0x01200011, 0, 0, 0, 0, 0)) == eperm    # fork()
    assert _run_filter(nr["fork"]) == _run_filter(nr["vfork"]) == eperm
    assert _run_filter(nr["clone3"]) == sandbox.SECCOMP_RET_ERRNO | 38       # ENOSYS: glibc falls back to clone
    assert _run_filter(nr["ioctl"], (0, 0x5412, 0, 0, 0, 0)) == eperm        # TIOCSTI
    assert _run_filter(nr["ioctl"], (0, 0x5401, 0, 0, 0, 0)) == allow        # TCGETS
    assert _run_filter(59 | 0x40000000) == eperm                             # x32 ABI
    assert _run_filter(11, arch=0x40000003) == sandbox.SECCOMP_RET_KILL_PROCESS  # i386 execve


def test_kernel_cmd_and_launcher_refuses_tcp(tmp_path: Path) -> None:
    cmd = sandbox.sandboxed_kernel_cmd(str(tmp_path), [str(tmp_path)])
    assert cmd[1] == "-c" and "taskweaver_lab.sandbox" in cmd[2] and cmd[-2:] == ["-f", "{connection_file}"]
    tcp = tmp_path / "kernel.json"
    tcp.write_text(json.dumps({"transport": "tcp", "ip": "127.0.0.1", "shell_port": 1}))
    argv = [a.replace("{connection_file}", str(tcp)) for a in cmd]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 70 and "needs transport='ipc'" in done.stderr, done.stderr


# --- attacks fail at the OS layer, guard and verifier absent ----------------------------------------------
def test_reading_outside_the_workspace_is_denied(boxed: SandboxedKernel, canaries: Canaries) -> None:
    for code in (f"open({str(canaries.secret)!r}).read()", f"import os\nos.listdir({str(canaries.outside)!r})",
                 "open('/etc/shadow').read()", "import os\nos.listdir(os.path.expanduser('~'))",
                 "import os\nopen(f'/proc/{os.getppid()}/environ').read()",   # the server's env (same uid)
                 "import pandas as pd\npd.read_csv('/etc/passwd/../shadow')",
                 "import pathlib\npathlib.Path.cwd().parent.joinpath('outside', 'secret.txt').read_text()"):
        result = boxed.run(code, agent=True)
        assert result.error.startswith(("PermissionError", "NotADirectoryError")), (code, result)
        assert CANARY_FILE_TEXT not in result.text


def test_writing_outside_the_workspace_is_denied(boxed: SandboxedKernel, canaries: Canaries) -> None:
    for code in (f"open({str(canaries.outside / 'new.txt')!r}, 'w')", "open('/tmp/pwned_twl.png', 'wb')",
                 f"import os\nos.remove({str(canaries.secret)!r})",
                 f"import os\nos.symlink({str(canaries.secret)!r}, 'link.txt')\nopen('link.txt').read()",
                 f"import shutil\nshutil.copy({str(canaries.secret)!r}, 'copy.txt')",
                 f"import os\nos.link({str(canaries.secret)!r}, 'hard.txt')", "import os\nos.mkfifo('fifo')",
                 "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
                 "plt.plot([1, 2])\nplt.savefig('/tmp/pwned_twl.png')"):
        result = boxed.run(code, agent=True)
        # Landlock answers a link that would give the file more rights with EXDEV
        assert result.error.startswith(("PermissionError", "OSError: [Errno 18]")), (code, result)
    assert not canaries.leaks([]), canaries.leaks([])
    assert not {"link.txt", "copy.txt", "hard.txt", "fifo"} & {p.name for p in canaries.workspace.iterdir()}


def test_processes_cannot_be_started(boxed: SandboxedKernel) -> None:
    for code in ("import subprocess\nsubprocess.run(['id'])", "import os\nos.execv('/usr/bin/id', ['id'])",
                 "import os\nos.fork()", "import os\nos.posix_spawn('/usr/bin/id', ['id'], {})",
                 "import multiprocessing\nmultiprocessing.Process(target=print).start()"):
        result = boxed.run(code, agent=True)
        assert result.error.startswith("PermissionError"), (code, result)
    # system() gets a failed spawn from libc: exit status 127, nothing ran
    for code in ("import os\nprint(os.system('id'))", "import ctypes\nprint(ctypes.CDLL(None).system(b'id'))"):
        assert ok(boxed.run(code, agent=True)).strip() == str(127 << 8), code
    assert "uid=" not in ok(boxed.run("print('still alive')", agent=True))


def test_network_is_denied(boxed: SandboxedKernel, canaries: Canaries) -> None:
    unix_path = canaries.root / "canary.sock"   # a unix socket outside (think /var/run/docker.sock)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(unix_path))
    listener.listen(1)
    try:
        for code in (f"import socket\nsocket.create_connection(('127.0.0.1', {canaries.port}), timeout=2)",
                     f"import socket\nsocket.socket(socket.AF_INET6).connect(('::1', {canaries.port}))",
                     "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))",
                     "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
                     f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{canaries.port}/', timeout=2)",
                     f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({str(unix_path)!r})",
                     "import socket\nsocket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'x', '/dev/log')"):
            result = boxed.run(code, agent=True)
            assert "PermissionError" in result.error or "Operation not permitted" in result.error, (code, result)
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert canaries.connections.empty(), canaries.connections.get()


def test_native_code_outside_allowed_roots_is_denied(boxed: SandboxedKernel, canaries: Canaries) -> None:
    libz = ctypes.util.find_library("z")
    assert libz, "zlib is needed for this test"
    system_copy = next(p for p in (f"/usr/lib/x86_64-linux-gnu/{libz}", f"/lib/x86_64-linux-gnu/{libz}",
                                   f"/usr/lib64/{libz}", f"/usr/lib/{libz}") if os.path.exists(p))
    outside_copy = canaries.root / "libevil.so"
    shutil.copy(system_copy, outside_copy)
    result = boxed.run(f"import ctypes\nctypes.CDLL({str(outside_copy)!r})", agent=True)
    assert result.error.startswith("OSError") and "Permission denied" in result.error, result
    assert "ok" in ok(boxed.run(f"import ctypes\nctypes.CDLL({system_copy!r})\nprint('ok')", agent=True))


def test_signals_and_tracing_outside_the_sandbox_are_denied(boxed: SandboxedKernel) -> None:
    if ABI < 6:
        pytest.skip(f"signal scoping needs Landlock ABI >= 6 (this kernel: {ABI})")
    result = boxed.run("import os, signal\nos.kill(os.getppid(), 0)", agent=True)   # the server: same uid
    assert result.error.startswith("PermissionError"), result
    result = boxed.run("import ctypes\nprint(ctypes.CDLL(None).ptrace(16, __import__('os').getppid(), 0, 0),"
                       " ctypes.get_errno())", agent=True)
    assert ok(result).split()[0] == "-1", result


def test_ordinary_work_still_works(boxed: SandboxedKernel, canaries: Canaries) -> None:
    code = (
        "import numpy as np, pandas as pd\n"
        "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "from sklearn.linear_model import LinearRegression\n"
        "df = pd.read_csv('sales.csv')\n"
        "summary = df.groupby('region')['revenue'].sum()\nsummary.to_csv('by_region.csv')\n"
        "fig, ax = plt.subplots()\nsummary.plot.bar(ax=ax)\nfig.savefig('by_region.png')\n"
        "model = LinearRegression().fit(df[['units']], df['revenue'])\n"
        "import tempfile\nwith tempfile.NamedTemporaryFile() as fh:\n    fh.write(b'x')\n"
        "print(len(pd.read_csv('by_region.csv')), round(float(np.mean(df['units'])), 1) > 0, model.coef_.shape)"
    )
    assert ok(boxed.run(code, agent=True)).split() == [str(len(set(pd_regions(canaries)))), "True", "(1,)"]
    assert (canaries.workspace / "by_region.png").stat().st_size > 1000


def pd_regions(canaries: Canaries) -> list[str]:
    rows = (canaries.workspace / "sales.csv").read_text().splitlines()
    column = rows[0].split(",").index("region")
    return [r.split(",")[column] for r in rows[1:]]


def test_static_kernelspec_under_a_multikernel_manager(canaries: Canaries, tmp_path: Path) -> None:
    """The Jupyter server's path: a kernelspec without --workspace (the kernel's cwd is the workspace),
    ``KernelManager.transport = "ipc"`` and connection files in the server's runtime dir; restart works."""
    import asyncio

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.multikernelmanager import AsyncMultiKernelManager
    from traitlets.config import Config

    spec_dir = tmp_path / "kernels" / "twl-sandbox"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": sandbox.sandboxed_kernel_cmd(None),
                                                      "display_name": "sandboxed", "language": "python"}))
    runtime = Path(tempfile.mkdtemp(prefix="twl-rt-"))  # unix socket paths max 107 bytes: tmp_path is too long
    (runtime / "kernel-other.json").write_text('{"key": "another kernel\'s key"}')

    async def scenario() -> list[str]:
        config = Config()
        config.KernelManager.transport = "ipc"
        mkm = AsyncMultiKernelManager(kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
                                      config=config, connection_dir=str(runtime))
        kid = await mkm.start_kernel(kernel_name="twl-sandbox", cwd=str(canaries.workspace), env=kernel_env())
        client = mkm.get_kernel(kid).client()
        client.start_channels()
        seen: list[str] = []
        try:
            await client.wait_for_ready(timeout=60)
            await mkm.restart_kernel(kid, now=True)
            await client.wait_for_ready(timeout=60)
            for code in ("import os\nprint(os.getcwd())", f"open({str(runtime / 'kernel-other.json')!r})"):
                msg_id = client.execute(code)
                while True:
                    msg = await client.get_iopub_msg(timeout=30)
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    if msg["msg_type"] == "stream":
                        seen.append(msg["content"]["text"].strip())
                    elif msg["msg_type"] == "error":
                        seen.append(msg["content"]["ename"])
                    elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        break
        finally:
            client.stop_channels()
            await mkm.shutdown_all(now=True)
            shutil.rmtree(runtime, ignore_errors=True)
        return seen

    assert asyncio.run(scenario()) == [str(canaries.workspace), "PermissionError"]


def test_whole_attack_corpus_without_verifier_or_guard(boxed: SandboxedKernel, canaries: Canaries) -> None:
    """Every attack of the corpus, straight to the sandboxed kernel: no canary sees anything."""
    started, results = time.monotonic(), []
    for _, code, _ in ATTACKS:
        results.append(boxed.run(canaries.fill(code), agent=True, timeout=20))
    leaks = canaries.leaks(results)
    denied = sum("PermissionError" in r.error or "Operation not permitted" in r.error + r.text
                 or "Permission denied" in r.error + r.text for r in results)
    print(f"\nsandbox alone: {len(ATTACKS)} attacks, {denied} hit an OS denial, {boxed.restarts} kernel restarts "
          f"(exit(), SIGINT ignored), {len(leaks)} leaks, {time.monotonic() - started:.1f} s")
    assert not leaks, leaks
    assert ok(boxed.run("print(1 + 1)", agent=False)).strip() == "2"   # the kernel survived them all


def test_benign_corpus_with_guard_inside_the_sandbox(canaries: Canaries, tmp_path_factory: pytest.TempPathFactory) -> None:
    """All layers together: the OS sandbox adds no false positives to the 260 benign cells."""
    workspace = tmp_path_factory.mktemp("benign_ws")
    kernel = SandboxedKernel(workspace)
    try:
        assert not kernel.install_guard(workspace).error
        assert not kernel.run(SETUP, agent=False).error
        started, failures = time.monotonic(), []
        for cell in benign_cells():
            result = kernel.run(cell, agent=True)
            if result.error or result.blocked or result.timed_out:
                failures.append(f"{cell[:70]!r}: {result.error or result.text[-300:]}")
        print(f"\nbenign in sandbox: {len(benign_cells())} cells, {len(failures)} failures, "
              f"{time.monotonic() - started:.1f} s")
        assert not failures, "\n".join(failures)
    finally:
        kernel.close()
    assert not Path(kernel.manager.connection_file).parent.exists()   # the private runtime folder is removed


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-s"]))
