"""The verifier: a pure AST policy over the exact source IPython will run.

First of three security layers (verifier -> runtime guard in the kernel -> optional OS sandbox).
It is deliberately conservative about *reach* (which modules, attributes and builtins generated
code can name) and deliberately quiet about ordinary data work (pandas, numpy, matplotlib,
scikit-learn, statsmodels). Every rejection is a ``Violation(rule, line, message)`` whose message
tells the Code Generator what to write instead; the loop feeds ``Verdict.feedback()`` back to it.

No I/O beyond reading the arguments: the workspace is only used to normalize literal paths.
"""
from __future__ import annotations

import ast
import posixpath
import re
import threading
from dataclasses import dataclass
from typing import Iterable

from .namespace_rule import namespace_violations
from .steps import Verdict, Violation

DEFAULT_ALLOWED_MODULES: tuple[str, ...] = (
    # data work
    "pandas", "numpy", "matplotlib", "mpl_toolkits", "scipy", "sklearn", "statsmodels", "seaborn", "patsy",
    # pure-computation stdlib
    "math", "cmath", "statistics", "random", "decimal", "fractions", "numbers",
    "datetime", "time", "calendar", "zoneinfo",
    "json", "csv", "re", "string", "textwrap", "difflib", "unicodedata", "hashlib",
    "collections", "itertools", "functools", "operator", "heapq", "bisect", "copy", "pprint",
    "dataclasses", "enum", "typing", "warnings",
    # file access inside the workspace (restricted below, backed by the guard)
    "io", "os", "pathlib", "glob",
)

# Modules usable only through a few attributes: ``None`` means every public attribute.
RESTRICTED_MODULE_ATTRS: dict[str, frozenset[str] | None] = {
    "io": frozenset({"StringIO", "BytesIO"}),
    "os": frozenset({"path", "listdir", "getcwd", "makedirs", "mkdir", "sep", "linesep", "walk",
                     "scandir", "remove", "cpu_count"}),
    "os.path": None,
}

# Submodules of allowed packages that expose native code, pickles or processes.
DENIED_SUBMODULES: tuple[str, ...] = (
    "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing",
    "pandas.io.pickle", "pandas.io.common", "pandas.compat.pickle_compat",
    "sklearn.externals", "sklearn.utils._joblib", "statsmodels.iolib.smpickle",
)

# Attribute names that lead out of the sandbox whatever object they hang off
# (``pd.io.common.os``, ``typing.sys.modules``, ``np.ctypeslib``...). Value: (rule, advice).
_REACH = ("module_reach", "reaching other modules through a library is not allowed; use the library's public data API")
_INTROSPECT = ("introspection", "frame, code and globals introspection is not allowed")
_DESERIALIZE = ("deserialize", "deserializing pickles can run arbitrary code; read CSV, JSON, Parquet or Excel instead")
_PROCESS = ("process", "starting processes or running shell commands is not allowed")
_IPYTHON = ("ipython", "IPython magics, shell escapes (!cmd) and get_ipython() are not allowed; write plain Python")
BANNED_ATTRIBUTES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        ["os", "sys", "subprocess", "shutil", "socket", "ctypes", "ctypeslib", "importlib", "builtins",
         "urllib", "urllib3", "requests", "http", "ftplib", "smtplib", "multiprocessing", "threading",
         "_thread", "atexit", "pty", "tempfile", "gc", "inspect", "codeop", "sysconfig", "runpy",
         "pkgutil", "zipimport", "webbrowser", "asyncio", "concurrent", "posix", "nt", "platform", "mmap",
         "resource", "fcntl", "modules", "cdll", "CDLL", "PyDLL", "pythonapi", "LoadLibrary", "load_library",
         "dlopen", "f2py", "environ", "getenv", "putenv", "unsetenv", "_posixsubprocess"], _REACH),
    **dict.fromkeys(
        ["f_globals", "f_locals", "f_back", "f_builtins", "f_code", "gi_frame", "gi_code", "cr_frame",
         "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "co_consts", "func_globals",
         "func_code", "_getframe", "_current_frames", "settrace", "setprofile", "addaudithook",
         "attrgetter", "methodcaller", "Formatter", "vformat"], _INTROSPECT),
    **dict.fromkeys(
        ["pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "read_pickle",
         "load_pickle", "smpickle", "pickle_compat", "unpickle"], _DESERIALIZE),
    **dict.fromkeys(
        ["system", "popen", "Popen", "spawnl", "spawnv", "spawnve", "spawnlp", "execv", "execve", "execl",
         "execlp", "execvp", "fork", "forkpty", "posix_spawn", "kill", "killpg", "startfile"], _PROCESS),
    **dict.fromkeys(["get_ipython", "run_line_magic", "run_cell_magic", "getoutput", "run_cell", "kernel",
                     "load_ext", "enable_load_extension", "load_extension"], _IPYTHON),
}

# Builtins that are dangerous by *name* (``o = open`` is as bad as calling it).
_DYNAMIC = ("dynamic_code", "running code built at runtime is not allowed; write the code out directly")
BANNED_NAMES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(["eval", "exec", "compile", "__import__"], _DYNAMIC),
    **dict.fromkeys(["globals", "locals", "vars", "setattr", "delattr", "breakpoint"], _INTROSPECT),
    "input": ("builtin", "input() would wait forever for a reply; the code must run unattended"),
    "exit": ("builtin", "exit() would stop the kernel"),
    "quit": ("builtin", "quit() would stop the kernel"),
    "get_ipython": _IPYTHON,
}
# Builtins allowed only in direct-call position, with argument checks in ``_check_call``.
CALL_ONLY_NAMES = frozenset({"open", "getattr", "hasattr"})
SAFE_DUNDERS = frozenset({"__init__", "__name__", "__doc__", "__version__", "__qualname__"})

# Calls whose literal string arguments are paths or URLs.
_IO_NAME = re.compile(
    r"^(open|Path|PurePath|PosixPath|read_\w+|to_(?!numpy$|list$|dict$|frame$|datetime$|numeric$|timedelta$"
    r"|period$|timestamp$|records$|string$|markdown$|latex$)\w+|savefig|imsave|imread|load|loadtxt|genfromtxt"
    r"|savetxt|save|savez|savez_compressed|fromfile|tofile|ExcelWriter|ExcelFile|HDFStore|connect|create_engine"
    r"|listdir|scandir|walk|glob|iglob|exists|isfile|isdir|getsize|makedirs|mkdir|remove|unlink|rmdir|chdir"
    r"|read_text|write_text|read_bytes|write_bytes|touch|joinpath|open_dataset|sql_pull_data)$"
)
_PATH_KEYWORDS = frozenset({"path", "filepath_or_buffer", "fname", "file", "filename", "path_or_buf", "io",
                            "database", "fp", "excel_writer", "path_or_buffer", "src", "dst", "name"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://|^file:", re.ASCII)
_DUNDER_TEXT = re.compile(r"__[A-Za-z]\w*__")
_SAFE_DUNDER_TEXT = SAFE_DUNDERS | {"__main__"}
_NETWORK_ADVICE = "downloading data is not allowed (no network); use files in the working directory"


@dataclass(frozen=True)
class Policy:
    allowed_modules: tuple[str, ...] = DEFAULT_ALLOWED_MODULES
    blocked_functions: tuple[str, ...] = ()
    plugin_only: bool = False
    plugin_names: tuple[str, ...] = ()
    workspace: str = "."            # absolute working directory of the kernel
    user_names: frozenset[str] = frozenset()   # variables the user created (namespace guard)


# CPython 3.11 keeps the AST constructor's recursion bookkeeping per interpreter, not per thread: two
# threads building ASTs at once can fail with "SystemError: AST constructor recursion depth mismatch".
# Every AST build in this process (verifier, plugin loading) holds this lock.
AST_LOCK = threading.Lock()


def verify(code: str, policy: Policy, attempt: int = 1) -> Verdict:
    """Check ``code`` as IPython would run it; ``checked_source`` is what the executor should send."""
    with AST_LOCK:
        return _verify(code, policy, attempt)


def _verify(code: str, policy: Policy, attempt: int) -> Verdict:
    source, violations = transformed_source(code)
    if source is None:
        return Verdict(ok=False, violations=tuple(violations), checked_source=code, attempt=attempt)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        v = Violation("syntax", exc.lineno or 1, f"SyntaxError: {exc.msg}. Fix the Python syntax.")
        return Verdict(ok=False, violations=(v,), checked_source=source, attempt=attempt)
    checker = _Checker(policy)
    checker.visit(tree)
    violations += checker.violations
    if policy.plugin_only:
        violations += _plugin_only_violations(tree, policy)
    violations += namespace_violations(tree, policy.user_names)
    violations = _dedupe(violations)
    return Verdict(ok=not violations, violations=tuple(violations), checked_source=source, attempt=attempt)


def transformed_source(code: str) -> tuple[str | None, list[Violation]]:
    """IPython's transform of ``code``; rejects input that is not a fixpoint of the transform.

    The fixpoint test means sending either the original or the checked source runs the same thing.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    manager = TransformerManager()
    try:
        source = manager.transform_cell(code)
        again = manager.transform_cell(source)
    except Exception as exc:  # IPython's transformers raise on some malformed input
        return None, [Violation("syntax", 1, f"IPython could not read the cell ({exc}). Write plain Python.")]
    if again != source:
        return None, [Violation("ipython", 1, "The cell changes meaning under IPython's input transforms "
                                              "(magics or shell escapes hidden in it). " + _IPYTHON[1] + ".")]
    return source, []


def _dedupe(violations: Iterable[Violation]) -> list[Violation]:
    seen: set[Violation] = set()
    unique = [v for v in violations if not (v in seen or seen.add(v))]
    return sorted(unique, key=lambda v: v.line)


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' otherwise."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _func_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _leading_string(node: ast.AST) -> str | None:
    """The literal prefix of a string expression (``"/etc/" + x``, f"/etc/{x}")."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        value = node.value
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Div)):
        return _leading_string(node.left)
    if isinstance(node, ast.JoinedStr) and node.values:
        return _leading_string(node.values[0])
    return None


class _Checker(ast.NodeVisitor):
    """Collects policy violations over one module."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.violations: list[Violation] = []
        self.module_aliases: dict[str, str] = {}   # local name -> restricted module it is bound to
        self.call_funcs: set[int] = set()          # ids of Name nodes in direct-call position
        self.attribute_bases: set[int] = set()     # ids of Name nodes that are the base of an attribute
        self.blocked = frozenset(policy.blocked_functions)

    def flag(self, node: ast.AST, rule: str, message: str) -> None:
        self.violations.append(Violation(rule, getattr(node, "lineno", 1), message))

    # --- imports -------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._check_module(node, alias.name):
                bound = alias.asname or alias.name.split(".")[0]
                target = alias.name if alias.asname else alias.name.split(".")[0]
                if target in RESTRICTED_MODULE_ATTRS:
                    self.module_aliases[bound] = target

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.flag(node, "import", "Relative imports are not allowed; import installed packages by name.")
            return
        if not self._check_module(node, module):
            return
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, "import", f"`from {module} import *` hides what is imported; import names explicitly.")
                continue
            self._check_attribute_name(node, alias.name)
            allowed = RESTRICTED_MODULE_ATTRS.get(module, None)
            if module in RESTRICTED_MODULE_ATTRS and allowed is not None and alias.name not in allowed:
                self.flag(node, "restricted_module",
                          f"`{module}.{alias.name}` is not allowed; from {module} only {', '.join(sorted(allowed))} may be used.")
            full = f"{module}.{alias.name}"
            if full in RESTRICTED_MODULE_ATTRS:
                self.module_aliases[alias.asname or alias.name] = full
            if any(full == d or full.startswith(d + ".") for d in DENIED_SUBMODULES):
                self.flag(node, "import", f"`{full}` is not allowed (it exposes native code, pickles or processes).")

    def _check_module(self, node: ast.AST, name: str) -> bool:
        allowed = self.policy.allowed_modules
        if not any(name == m or name.startswith(m + ".") for m in allowed):
            self.flag(node, "import", f"Module `{name}` is not allowed. Allowed modules: {', '.join(allowed)}.")
            return False
        if any(name == d or name.startswith(d + ".") for d in DENIED_SUBMODULES):
            self.flag(node, "import", f"`{name}` is not allowed (it exposes native code, pickles or processes).")
            return False
        for part in name.split(".")[1:]:
            if part.startswith("_") or part in BANNED_ATTRIBUTES:
                self.flag(node, "import", f"`{name}` is a private or dangerous submodule; use the public API.")
                return False
        return True

    # --- names and attributes ------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            return
        name = node.id
        if name in BANNED_NAMES:
            rule, advice = BANNED_NAMES[name]
            self.flag(node, rule, f"`{name}` is not allowed: {advice}.")
        elif name in CALL_ONLY_NAMES and id(node) not in self.call_funcs:
            self.flag(node, "builtin", f"`{name}` may only be called directly, not passed around or renamed.")
        elif name.startswith("__") and name not in SAFE_DUNDERS:
            self.flag(node, "dunder", f"`{name}` is an interpreter internal; it is not allowed.")
        elif name in self.blocked:
            self.flag(node, "blocked_function", f"`{name}` is blocked by the administrator's policy.")
        elif name in self.module_aliases and id(node) not in self.attribute_bases:
            self.flag(node, "restricted_module",
                      f"`{name}` may only be used as `{name}.<function>(...)`, not passed around or renamed.")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            self.attribute_bases.add(id(node.value))
            module = self.module_aliases.get(node.value.id)
            allowed = RESTRICTED_MODULE_ATTRS.get(module) if module else None
            if module and allowed is not None and node.attr not in allowed:
                self.flag(node, "restricted_module",
                          f"`{node.value.id}.{node.attr}` is not allowed; only {', '.join(sorted(allowed))} "
                          f"of `{module}` may be used.")
        self._check_attribute_name(node, node.attr)
        self.generic_visit(node)

    def _check_attribute_name(self, node: ast.AST, attr: str) -> None:
        if attr in BANNED_ATTRIBUTES:
            rule, advice = BANNED_ATTRIBUTES[attr]
            self.flag(node, rule, f"`.{attr}` is not allowed: {advice}.")
        elif attr.startswith("__") and attr not in SAFE_DUNDERS:
            self.flag(node, "dunder", f"`.{attr}`: dunder and name-mangled attributes are not allowed.")
        elif attr.startswith("fetch_") or attr == "load_dataset":
            self.flag(node, "network", f"`{attr}`: {_NETWORK_ADVICE}.")
        elif attr in self.blocked:
            self.flag(node, "blocked_function", f"`{attr}` is blocked by the administrator's policy.")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and any(m not in _SAFE_DUNDER_TEXT for m in _DUNDER_TEXT.findall(node.value)):
            self.flag(node, "dunder", "Strings naming dunder attributes (like '__class__') are not allowed.")

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:   # `case C(__class__=x)` reads an attribute by name
            self._check_attribute_name(node, attr)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg and node.arg.startswith("__"):
            self.flag(node, "dunder", f"Keyword argument `{node.arg}` is not allowed.")
        self.generic_visit(node)

    # --- calls ---------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            self.call_funcs.add(id(node.func))
        name = _func_name(node)
        if name in ("getattr", "hasattr") and isinstance(node.func, ast.Name):
            self._check_getattr(node, name)
        elif name == "type" and len(node.args) > 1:
            self.flag(node, "introspection", "type() with several arguments creates classes dynamically; use `class`.")
        elif name in ("format", "format_map") and isinstance(node.func, ast.Attribute):
            self._check_format(node)
        elif name in ("eval", "query") and isinstance(node.func, ast.Attribute):
            self._check_pandas_eval(node, name)
        if _IO_NAME.match(name) or (name == "join" and _dotted(node.func).endswith("path.join")):
            self._check_paths(node)
        self._check_keywords(node)
        self.generic_visit(node)

    def _check_getattr(self, node: ast.Call, name: str) -> None:
        attr = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)) or attr.value.startswith("_"):
            self.flag(node, "introspection",
                      f"{name}() needs a literal public attribute name as its second argument; "
                      "use normal attribute access (obj.attr) or a dict instead.")
        elif attr.value in BANNED_ATTRIBUTES:
            self._check_attribute_name(node, attr.value)

    def _check_format(self, node: ast.Call) -> None:
        receiver = node.func.value  # type: ignore[attr-defined]
        if isinstance(receiver, ast.Constant) and isinstance(receiver.value, str):
            return   # literal templates are checked by visit_Constant (dunder fields)
        if "style" in _dotted(receiver).split(".") or any(
            isinstance(n, ast.Attribute) and n.attr == "style" for n in ast.walk(receiver)
        ):
            return   # pandas Styler.format takes a formatter, not a template
        self.flag(node, "format", "str.format on a template that is not a literal string can read attributes of "
                                  "its arguments; use an f-string or a literal template.")

    def _check_pandas_eval(self, node: ast.Call, name: str) -> None:
        for kw in node.keywords:
            if kw.arg == "engine" and not (isinstance(kw.value, ast.Constant) and kw.value.value == "numexpr"):
                self.flag(node, "pandas_eval", f"{name}() with engine other than the default is not allowed; "
                                               "drop the engine argument or use boolean indexing.")
            if kw.arg in ("local_dict", "global_dict", "resolvers"):
                self.flag(node, "pandas_eval", f"{name}() with {kw.arg}= is not allowed; use @variables.")
        expr = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "expr"), None)
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "''", expr.value)   # compared values are data, not names
            for word in re.findall(r"[A-Za-z_]\w*", unquoted):   # the expression language reads attributes too
                self._check_attribute_name(node, word)
        elif expr is not None:
            self.flag(node, "pandas_eval", f"{name}() needs a literal string expression; build the filter with "
                                           "boolean indexing (df[df.a > x]) instead of a computed string.")

    def _check_paths(self, node: ast.Call) -> None:
        candidates = list(node.args) + [k.value for k in node.keywords if k.arg in _PATH_KEYWORDS]
        for arg in candidates:
            text = _leading_string(arg)
            if text is None:
                continue
            problem = path_problem(text, self.policy.workspace)
            if problem:
                self.flag(node, *problem)
        if any(k.arg == "storage_options" for k in node.keywords):
            self.flag(node, "network", "storage_options (remote storage) is not allowed; read local files only.")

    def _check_keywords(self, node: ast.Call) -> None:
        for kw in node.keywords:
            value = kw.value
            if kw.arg == "allow_pickle" and not (isinstance(value, ast.Constant) and value.value is False):
                self.flag(node, *_DESERIALIZE[:1], "allow_pickle is not allowed: " + _DESERIALIZE[1] + ".")
            if kw.arg == "n_jobs" and not (isinstance(value, ast.Constant) and value.value in (None, 1)):
                self.flag(node, "process", "n_jobs other than 1 starts worker processes, which the runtime guard "
                                           "blocks; use n_jobs=1 or leave it out.")


def path_problem(text: str, workspace: str) -> tuple[str, str] | None:
    """(rule, message) if a literal path or URL points outside the workspace."""
    if _URL.match(text):
        return "network", f"'{text[:60]}' is a URL; network access is not allowed. Read files in the working directory."
    workspace = posixpath.normpath(workspace or ".")
    if text.startswith("~") or text.startswith("\\") or re.match(r"^[A-Za-z]:[\\/]", text):
        return "path", f"'{text[:60]}' is outside the working directory; use a path relative to it."
    full = posixpath.normpath(text if text.startswith("/") else posixpath.join(workspace, text))
    if workspace.startswith("/") and not (full == workspace or full.startswith(workspace.rstrip("/") + "/")):
        return "path", f"'{text[:60]}' is outside the working directory {workspace}; use a relative path inside it."
    if not workspace.startswith("/") and (text.startswith("/") or full.startswith("..")):
        return "path", f"'{text[:60]}' is outside the working directory; use a relative path inside it."
    return None


# --- plugin-only mode -----------------------------------------------------------------------
def _plugin_only_violations(tree: ast.Module, policy: Policy) -> list[Violation]:
    plugins = frozenset(policy.plugin_names)
    message = ("Plugin-only mode: only calls to the plugins ({}) and plain assignments of names and literals are "
               "allowed.".format(", ".join(sorted(plugins)) or "none registered"))
    bad: list[Violation] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and all(_simple_target(t) for t in stmt.targets):
            value = stmt.value
        elif isinstance(stmt, ast.Expr):
            value = stmt.value
        else:
            bad.append(Violation("plugin_only", stmt.lineno, message))
            continue
        if not _plugin_value(value, plugins):
            bad.append(Violation("plugin_only", stmt.lineno, message))
    return bad


def _simple_target(node: ast.AST) -> bool:
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_simple_target(e) for e in node.elts)
    return isinstance(node, ast.Name)


def _plugin_value(node: ast.AST, plugins: frozenset[str], top: bool = True) -> bool:
    if isinstance(node, (ast.Constant, ast.Name)):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_plugin_value(e, plugins, False) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(_plugin_value(e, plugins, False) for e in [*node.keys, *node.values] if e is not None)
    if top and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in plugins:
        return all(_plugin_value(a, plugins, False) for a in [*node.args, *(k.value for k in node.keywords)])
    return False
