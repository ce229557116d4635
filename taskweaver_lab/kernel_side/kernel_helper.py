"""Kernel-side bookkeeping, shipped as SOURCE into the user's kernel (stdlib only, self-contained).

It runs as the private module ``_taskweaver_lab_kernel`` (never in the user's namespace) and:
- recognises agent cells by the execute_request metadata ``{"taskweaver_lab": {"agent": true}}``;
- snapshots the namespace and the workspace's files before an agent cell;
- afterwards, ``report()`` returns a bounded JSON summary: the cell's result, the variables it
  created or changed, every variable's one-line description, the names the user (not the agent)
  owns, and the files it created or changed. Its size does not grow with the data;
- ``stop(msg_id)`` interrupts one agent cell, and only while that cell's own code runs (Stop).

Objects agent code made are never evaluated here outside the guard: ``report()`` runs inside the guard's
``agent_context()`` when the guard is installed (and the guard also wraps every ``user_expressions``
evaluation), and what runs after a cell unguarded (the ``post_run_cell`` hook) looks only at types:
``type(v)``, exact builtin/numpy/pandas types, names read through ``type``'s own descriptors.
Strings that look like credentials are shown as ``[REDACTED]`` in the variable listing.
"""
import contextlib
import json
import os
import re
import sys
import threading
import types

MODULE_NAME = "_taskweaver_lab_kernel"
_IGNORED = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_state = {"agent_names": set(), "plugin_names": set(), "ids": {}, "files": {}, "count": None,
          "workspace": ".", "agent_cell": False,
          "running": {}}  # thread ident -> msg_id of the agent execute_request that thread runs


_GUARD_MODULE = "_taskweaver_lab_guard"
_TYPE_NAME = type.__dict__["__name__"].__get__   # a class's name without running its metaclass's code
_SECRET = re.compile(
    r"sk-[A-Za-z0-9_\-]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|hf_[A-Za-z0-9]{30,}|xox[abpr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_\-]{35}|glpat-[A-Za-z0-9_\-]{20,}"
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}|(?i:bearer\s+)[A-Za-z0-9._~+/\-]{16,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|\b[0-9a-fA-F]{40,}\b|\b[A-Za-z0-9/+]{40}\b")


def _ip():
    if _state.get("ip") is None:   # captured once: later changes to sys.modules don't redirect us
        ipython = sys.modules.get("IPython")  # the kernel's own; kernel-side code imports only the stdlib
        _state["ip"] = ipython.get_ipython() if ipython is not None else None
    return _state["ip"]


def _type_name(value):
    return _TYPE_NAME(type(value))


def _redacted(text):
    return _SECRET.sub("[REDACTED]", text)


def is_agent_cell():
    ip = _ip()
    kernel = getattr(ip, "kernel", None)
    parent = kernel.get_parent() if kernel is not None and hasattr(kernel, "get_parent") else {}
    meta = (parent or {}).get("metadata") or {}
    return bool((meta.get("taskweaver_lab") or {}).get("agent")) or _state.get("force_agent", False)


def _public_names(ns):
    """Type-level only (``isinstance`` would read an agent object's ``__class__``)."""
    if type(ns) is not dict:
        return []
    return [n for n, v in list(ns.items()) if type(n) is str and not n.startswith("_") and n not in _IGNORED
            and not issubclass(type(v), types.ModuleType) and n not in _state["plugin_names"]]


def _file_times(workspace, limit=5000):
    times = {}
    try:
        with os.scandir(workspace) as entries:
            for i, entry in enumerate(entries):
                if i >= limit:
                    break
                if entry.is_file(follow_symlinks=False):
                    times[entry.name] = entry.stat().st_mtime_ns
    except OSError:
        pass
    return times


def _parent_msg_id():
    kernel = getattr(_ip(), "kernel", None)
    parent = kernel.get_parent() if kernel is not None and hasattr(kernel, "get_parent") else {}
    return ((parent or {}).get("header") or {}).get("msg_id")


def _pre_run_cell(info=None):
    _state["agent_cell"] = is_agent_cell()
    if not _state["agent_cell"]:
        _state["running"].pop(threading.get_ident(), None)
        return
    ns = _ip().user_ns
    _state["ids"] = {n: id(ns[n]) for n in _public_names(ns)}
    _state["files"] = _file_times(_state["workspace"])
    _state["count"] = _ip().execution_count
    _state["running"][threading.get_ident()] = _parent_msg_id()  # last: stop() may aim at this cell now


def _post_execute():
    # the first post_execute hook (installed before the guard's): the cell's code is over
    _state["running"].pop(threading.get_ident(), None)


def _post_run_cell(result=None):
    if not _state["agent_cell"]:
        return
    ns = _ip().user_ns
    _state["agent_names"].update(n for n in _public_names(ns) if _state["ids"].get(n) != id(ns[n]))


def install(workspace, plugin_names=()):
    """Idempotent: hooks register once per kernel."""
    _state["workspace"] = workspace
    _state["plugin_names"] = set(plugin_names)
    ip = _ip()
    if not _state.get("installed") and ip is not None:
        ip.events.register("pre_run_cell", _pre_run_cell)
        ip.events.register("post_execute", _post_execute)
        ip.events.register("post_run_cell", _post_run_cell)
        _state["installed"] = True


def _in_cell_code(frame):
    """True while a thread whose innermost frame is ``frame`` runs the cell's own code (IPython's
    ``run_code`` has the cell's ``<module>`` frame directly above it)."""
    child = None
    while frame is not None:
        code = frame.f_code
        if code.co_name == "run_code" and code.co_filename.endswith("interactiveshell.py"):
            return child is not None and child.f_code.co_name == "<module>"
        child, frame = frame, frame.f_back
    return False


def stop(msg_id):
    """KeyboardInterrupt in the agent cell answering ``msg_id``; returns "stopped" or "not running".

    Only while that cell's own code runs: an interrupt that lands in the kernel's bookkeeping instead
    loses the execute reply or the idle status (the client then waits forever), and one left pending
    in an idle subshell thread kills that subshell at its next message."""
    import ctypes
    import signal
    import sys

    frames = sys._current_frames()
    for ident, running in list(_state["running"].items()):
        if running != msg_id or not _in_cell_code(frames.get(ident)):
            continue
        if ident == threading.main_thread().ident:
            signal.pthread_kill(ident, signal.SIGINT)  # a signal also ends a blocking call (time.sleep)
        else:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
        return "stopped"
    return "not running"


def _cut(text, limit):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + " ...[%d more chars]" % (len(text) - limit)


_FUNCTIONS = (type(len), type(_cut), type(_cut.__get__(0)), type)  # builtins, functions, methods, classes
_SCALARS = (int, float, complex, bool, str, bytes, type(None))


def _exact(value, module, name):
    """True when ``value``'s type is exactly ``module.name`` (pandas, numpy), checked on the type alone:
    nothing the agent defined (a __getattr__, a property) runs, and the library is never imported here."""
    lib = sys.modules.get(module)
    return lib is not None and type(value) is getattr(lib, name, None)


def _safe_label(value):
    """A label whose repr runs no agent code: exact builtin scalars, or tuples of them."""
    return type(value) in _SCALARS or (type(value) is tuple and all(type(v) in _SCALARS for v in value))


def _column_label(name):
    """A column label as code must write it: bare when it is an identifier, else its repr (one line, cut)."""
    if type(name) is str and name.isidentifier():
        return _cut(name, 40)
    return _cut(repr(name), 40) if _safe_label(name) else _type_name(name)


def _frame_columns(frame, limit=20):
    """'name: dtype, ...' of a DataFrame's first ``limit`` columns (the Code Generator copies these names)."""
    head = frame.iloc[:0, :limit]  # an empty slice: dtypes of the shown columns only, whatever the width
    cols = ", ".join("%s: %s" % (_column_label(c), t) for c, t in head.dtypes.items())
    more = " +%d more columns" % (frame.shape[1] - limit) if frame.shape[1] > limit else ""
    return _cut(cols, 600) + more


def describe(value, limit=160):
    """One line per value; for containers shape and types, never the data; unknown types by name only."""
    kind = _type_name(value)
    if _exact(value, "pandas", "DataFrame"):
        return "%s %dx%d [%s]" % (kind, value.shape[0], value.shape[1], _frame_columns(value))
    if _exact(value, "pandas", "Series") or _exact(value, "numpy", "ndarray"):
        name = value.name if kind == "Series" else None
        label = " name=%s" % _cut(repr(name), 40) if name is not None and _safe_label(name) else ""
        return "%s shape=%s dtype=%s%s" % (kind, tuple(value.shape), value.dtype, label)
    if type(value) in (list, tuple, dict, set, frozenset):
        return "%s len=%d" % (kind, len(value))
    if type(value) in _SCALARS:
        return _redacted(_cut(repr(value), limit))
    if type(value) in _FUNCTIONS:  # other callables could answer __name__ with agent code
        return "%s %s()" % (kind, value.__name__ if type(value.__name__) is str else "?")
    return kind


def _result_text(value, limit):
    if value is None:
        return ""
    head = describe(value)
    if _exact(value, "pandas", "DataFrame") or _exact(value, "pandas", "Series"):
        return head + "\n" + _redacted(_cut(value.head(5).to_string(max_cols=12, max_colwidth=40), limit))
    if type(value) in _SCALARS or type(value) in (list, tuple, dict, set, frozenset):
        return _redacted(_cut(repr(value), limit))
    return ""   # any other object: the output the cell displayed (rendered inside the guard) stands


def _guarded():
    """The guard's window around everything that may touch agent objects (nothing when there is no guard)."""
    guard = sys.modules.get(_GUARD_MODULE)
    return guard.agent_context() if guard is not None else contextlib.nullcontext()


def _safely(function, *args):
    try:
        return function(*args)
    except Exception as exc:   # e.g. the guard blocked what an agent object did while it was described
        return "%s (%s)" % (_cut(str(exc), 200), _TYPE_NAME(type(args[0])))


def report(max_chars=1500):
    """JSON: result, changed, variables, user_names, artifacts (all bounded), built inside the guard."""
    with _guarded():
        return _report(max_chars)


def _report(max_chars):
    ns = _ip().user_ns
    count = _state["count"]
    out = ns.get("Out") if type(ns) is dict else None
    result = out.get(count) if type(out) is dict and count is not None else None
    names = _public_names(ns)
    changed = [n for n in names if _state["ids"].get(n) != id(ns[n])]
    ordered = changed + [n for n in names if n not in changed]
    variables = {n: _safely(describe, ns[n], 120) for n in ordered[:25]}
    before = _state["files"]
    after = _file_times(_state["workspace"])
    artifacts = sorted(n for n, t in after.items() if before.get(n) != t)[:20]
    return json.dumps({
        "result": _safely(_result_text, result, max_chars // 2),
        "changed": changed[:25],
        "variables": variables,
        "more_variables": max(0, len(names) - 25),
        "user_names": sorted(n for n in names if n not in _state["agent_names"]),
        "artifacts": artifacts,
    })
