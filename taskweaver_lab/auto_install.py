"""Opt-in automatic dependency installation (``TaskWeaverLab.auto_install``, issue 15 item 3; the seed's
``--auto-install``).

When agent code fails with ``ModuleNotFoundError`` for a module the admin listed in
``auto_install_packages``, the trusted side (the server or the CLI process, never the kernel, whose guard
stays on) runs ``<kernel python> -m pip install <requirement>`` and runs the same code once more. Never
silently: the step's outputs and summary start with a line saying what was installed (or why not).

What the kernel says is only used to *pick* an entry of the allowlist: the requirement and the pip
arguments come from the admin's config, and the interpreter from the kernelspec (never from the kernel's
``sys.executable``, which agent code could change).
"""
from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess
import sys
from typing import Any, Callable

from .steps import Execution

log = logging.getLogger("taskweaver_lab.auto_install")
MISSING = re.compile(r"ModuleNotFoundError: No module named '([A-Za-z_][A-Za-z0-9_.]*)'")
PIP_TIMEOUT_S = 600.0
NO_LOCAL_PYTHON = ("auto_install cannot install {requirement}: this kernel is not on the server's machine (a kernel "
                   "gateway runs it), so install {requirement} in the gateway's kernel environment instead.")
# Refreshes the kernel's import caches after an install (trusted setup code, not agent code).
REFRESH = "import importlib as _twl_il; _twl_il.invalidate_caches(); del _twl_il"


def parse_allowlist(entries: list[str]) -> dict[str, str]:
    """``{top-level module: pip requirement}`` from ``name`` / ``module=requirement`` entries."""
    allowed: dict[str, str] = {}
    for entry in entries:
        module, _, requirement = entry.partition("=")
        module = module.strip()
        if module:
            allowed[module] = requirement.strip() or module
    return allowed


def missing_module(execution: Execution) -> str:
    """The top-level module a failed execution could not import ('' when it failed otherwise)."""
    if execution.ok or execution.interrupted:
        return ""
    found = MISSING.search(execution.error or "") or MISSING.search(execution.summary or "")
    return found.group(1).split(".")[0] if found else ""


def kernel_python(argv: list[str]) -> str:
    """The interpreter of a kernelspec's argv, resolved as jupyter_client launches it."""
    first = argv[0] if argv else ""
    if not first:
        return ""  # no local kernelspec (a gateway's kernel): nothing here to install into
    if first in {"python", f"python{sys.version_info[0]}", "python%i.%i" % sys.version_info[:2]}:
        return sys.executable
    return shutil.which(first) or first


def pip_install(python: str, requirement: str, extra_args: list[str]) -> tuple[bool, str]:
    """(installed, pip's last lines) for one requirement; a timeout or a missing python is a failure."""
    command = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", *extra_args, requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    return done.returncode == 0, tail


def _noted(execution: Execution, text: str) -> Execution:
    line = {"output_type": "stream", "name": "stderr", "text": f"[TaskWeaver] {text}\n"}
    return dataclasses.replace(execution, outputs=(line, *execution.outputs), summary=f"{text}\n{execution.summary}")


class AutoInstaller:
    """Wraps an executor's ``execute`` (agent code only): install an allowlisted missing package, run again."""

    def __init__(self, executor: Any, python: str, packages: list[str], pip_args: list[str],
                 install: Callable[[str, str, list[str]], tuple[bool, str]] = pip_install) -> None:
        self.executor, self.python, self.pip_args, self.install = executor, python, list(pip_args), install
        self.allowed = parse_allowlist(packages)
        self.tried: set[str] = set()  # one attempt per module per session: a failing install is not repeated
        self._execute = executor.execute
        executor.execute = self.execute

    def execute(self, code: str, *, agent: bool = True, **kwargs: Any) -> Execution:
        execution = self._execute(code, agent=agent, **kwargs)
        module = missing_module(execution) if agent else ""
        if not module or module in self.tried:
            return execution
        self.tried.add(module)
        requirement = self.allowed.get(module)
        if requirement is None:
            return _noted(execution, f"'{module}' is not installed and not in TaskWeaverLab.auto_install_packages, so it "
                                     "was not installed: ask your admin to add it, or install it yourself.")
        if not self.python:
            return _noted(execution, NO_LOCAL_PYTHON.format(requirement=requirement))
        log.info("auto_install: pip install %s into %s", requirement, self.python)
        ok, tail = self.install(self.python, requirement, self.pip_args)
        if not ok:
            return _noted(execution, f"Installing {requirement} for '{module}' failed (pip: {tail or 'no output'}); "
                                     "install it yourself or check auto_install_pip_args.")
        self.executor.bootstrap(REFRESH, "the import caches")
        again = self._execute(code, agent=agent, **kwargs)
        return _noted(again, f"'{module}' was missing: installed {requirement} with pip (auto_install) and ran the "
                             "step again.")


def enable(executor: Any, config: Any, kernel_argv: list[str]) -> AutoInstaller | None:
    """Wrap ``executor`` when ``auto_install`` is on (the interpreter from the kernelspec's argv)."""
    if not config.auto_install:
        return None
    return AutoInstaller(executor, kernel_python(kernel_argv), list(config.auto_install_packages),
                         list(config.auto_install_pip_args))


def enable_on_own_kernel(executor: Any, config: Any) -> AutoInstaller | None:
    """``enable`` on a kernel this process started (its manager knows the kernelspec)."""
    spec = getattr(getattr(executor, "manager", None), "kernel_spec", None)
    return enable(executor, config, list(getattr(spec, "argv", None) or ["python"]))
