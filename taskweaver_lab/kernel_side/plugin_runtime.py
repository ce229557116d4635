"""Kernel-side plugin runtime (STDLIB ONLY: its source is shipped into the user's kernel).

``plugins.kernel_bootstrap_code`` embeds this file's text and executes it as the private module
``_taskweaver_lab_plugins`` inside the kernel, which may be remote and lack taskweaver_lab.
It provides what TaskWeaver plugin files expect from ``taskweaver.plugin`` (``Plugin``,
``register_plugin``, ``test_plugin``, a context with ``add_artifact`` / ``log`` / ``get_env``),
installs that as a ``taskweaver.plugin`` shim only when the real package is absent, loads each
plugin, and binds its name in the user namespace as a plain callable.

The executor reads what plugins did with silent executes:
``ARTIFACTS`` (dicts: name, path, file_name, type, desc, plugin), ``LOGS`` and ``LOAD_ERRORS``;
``take_artifacts_json()`` returns and clears ``ARTIFACTS``.
"""
from __future__ import annotations

import inspect
import json
import linecache
import os
import sys
import types
from abc import ABC, abstractmethod
from typing import Any, Callable, Literal, Optional

MODULE_NAME = "_taskweaver_lab_plugins"
LogErrorLevel = Literal["info", "warning", "error"]
ArtifactType = Literal["chart", "image", "df", "file", "txt", "svg", "html"]

ARTIFACTS: list[dict[str, str]] = []
LOGS: list[tuple[str, str, str]] = []
LOAD_ERRORS: list[str] = []
SESSION_VARS: dict[str, str] = {}
# Compile-time file names of plugin code, so a runtime guard can recognise plugin frames.
PLUGIN_FILENAMES: set[str] = set()
# Plugin name -> the callable bound in the user namespace (to unbind on a re-bootstrap).
BOUND: dict[str, Callable[..., Any]] = {}
_workspace: str = ""


class PluginContext:
    """What a plugin may ask of its environment (TaskWeaver's PluginContext API)."""

    def __init__(self, plugin_name: str, configurations: dict[str, Any]) -> None:
        self._plugin_name = plugin_name
        self._configurations = dict(configurations)

    @property
    def env_id(self) -> str:
        return "taskweaver_lab"

    @property
    def session_id(self) -> str:
        return os.environ.get("JPY_SESSION_NAME", "kernel")

    @property
    def execution_id(self) -> str:
        return str(len(LOGS))

    def add_artifact(self, name: str, file_name: str, type: ArtifactType, val: Any,
                     desc: Optional[str] = None) -> str:
        """Write ``val`` to ``file_name`` in the workspace and return the path (relative when possible)."""
        path = _artifact_path(file_name)
        _write_artifact(path, type, val)
        return _record_artifact(self._plugin_name, name, file_name, type, desc or "", path)

    def create_artifact_path(self, name: str, file_name: str, type: ArtifactType,
                             desc: str) -> tuple[str, str]:
        """Reserve a path for a file the plugin writes itself; returns (id, path)."""
        path = _artifact_path(file_name)
        return _record_artifact(self._plugin_name, name, file_name, type, desc or "", path), path

    def get_session_var(self, variable_name: str, default: Optional[str] = None) -> Optional[str]:
        return SESSION_VARS.get(variable_name, default)

    def log(self, level: LogErrorLevel, tag: str, message: str) -> None:
        LOGS.append((level, tag, message))
        if level in ("warning", "error"):  # worth seeing in the cell output; info stays in LOGS
            print(f"[{tag}] {level}: {message}", file=sys.stderr)

    def get_env(self, plugin_name: str, variable_name: str) -> str:
        """TaskWeaver's env name ``PLUGIN_<plugin>_<variable>`` first, then the YAML configurations."""
        env_name = f"PLUGIN_{plugin_name}_{variable_name}"
        if env_name in os.environ:
            return os.environ[env_name]
        if plugin_name == self._plugin_name and self._configurations.get(variable_name) is not None:
            return str(self._configurations[variable_name])
        raise KeyError(f"Plugin {plugin_name!r} needs {variable_name!r}: set the environment variable "
                       f"{env_name} or 'configurations: {{{variable_name}: ...}}' in its YAML.")

    def wrap_text_with_delimiter_temporal(self, text: str) -> str:
        return text  # TaskWeaver marks temporal text for its prompt; our prompts need no marker


class Plugin(ABC):
    """Base class of TaskWeaver plugins: a callable created with (name, ctx, config)."""

    def __init__(self, name: str, ctx: Any, config: dict[str, Any]) -> None:
        super().__init__()
        self.name = name
        self.ctx = ctx
        self.config = config

    @abstractmethod
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the plugin."""

    def log(self, level: LogErrorLevel, message: str) -> None:
        self.ctx.log(level, "Plugin-" + self.name, message)

    def get_env(self, variable_name: str) -> str:
        return self.ctx.get_env(self.name, variable_name)


# Set while one plugin file executes; receives each registered Plugin subclass.
register_plugin_inner: Optional[Callable[[type], None]] = None
register_plugin_test_inner: Optional[Callable[[str, str, Callable[..., Any]], None]] = None


def register_plugin(func: Any) -> Any:
    """Decorator for a Plugin subclass or a plain function (wrapped into a Plugin subclass)."""
    if register_plugin_inner is None:
        print("no registry for loading plugin")
    elif isinstance(func, type) and issubclass(func, Plugin):
        register_plugin_inner(func)
    elif callable(func):
        register_plugin_inner(_function_plugin(func))
    else:
        raise TypeError("only a Plugin subclass or a function can be registered as a plugin")
    return func


def _function_plugin(func: Callable[..., Any]) -> type:
    def call(self: Plugin, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    call.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
    return type(f"FuncPlugin_{func.__name__}", (Plugin,), {"__call__": call})


def test_plugin(name: Optional[str] = None, description: Optional[str] = None) -> Callable[..., Any]:
    """TaskWeaver's plugin self-test decorator: accepted and ignored (tests are not run here)."""
    def inner(func: Callable[..., Any]) -> Callable[..., Any]:
        return func
    return inner


def install_shim() -> Any:
    """Make ``taskweaver.plugin`` importable; return the module whose registry hook plugins call.

    The real TaskWeaver wins when it is installed, so its own plugins behave exactly as there.
    """
    existing = sys.modules.get("taskweaver.plugin")
    if existing is not None and not getattr(existing, "_taskweaver_lab_shim", False):
        return sys.modules.get("taskweaver.plugin.register", existing)
    import importlib
    import importlib.util
    if existing is None and importlib.util.find_spec("taskweaver") is not None:
        # the real TaskWeaver is installed in this kernel: its registry, found at run time (not a dependency)
        return importlib.import_module("taskweaver.plugin.register")
    this = sys.modules[__name__]
    package = sys.modules.get("taskweaver") or types.ModuleType("taskweaver")
    package.__path__ = []  # type: ignore[attr-defined]  # a package, so submodule imports resolve
    shim = types.ModuleType("taskweaver.plugin")
    shim.__path__ = []  # type: ignore[attr-defined]
    for attr in ("Plugin", "register_plugin", "test_plugin", "PluginContext", "LogErrorLevel", "ArtifactType"):
        setattr(shim, attr, getattr(this, attr))
    shim._taskweaver_lab_shim = True  # type: ignore[attr-defined]
    package.plugin = shim  # type: ignore[attr-defined]
    sys.modules["taskweaver"] = package
    sys.modules["taskweaver.plugin"] = shim
    # `from taskweaver.plugin.context import PluginContext` etc. resolve to this module.
    for sub in ("base", "context", "register"):
        sys.modules[f"taskweaver.plugin.{sub}"] = this
        setattr(shim, sub, this)
    return this


def load_plugin(spec: dict[str, Any], registry: Any) -> Callable[..., Any]:
    """Execute one plugin's source and return the callable to bind. Raises with a short reason."""
    name = spec["name"]
    filename = spec.get("source_path") or f"<plugin {name}>"
    code = compile(spec["source"], filename, "exec", dont_inherit=True)  # no __future__ leaks in
    PLUGIN_FILENAMES.add(filename)
    linecache.cache[filename] = (len(spec["source"]), None, spec["source"].splitlines(True), filename)
    module = types.ModuleType(f"{MODULE_NAME}.{name}")
    module.__file__ = filename
    sys.modules[module.__name__] = module
    found: list[type] = []
    registry.register_plugin_inner = found.append
    registry.register_plugin_test_inner = lambda *args: None
    try:
        exec(code, module.__dict__)
    finally:
        registry.register_plugin_inner = None
        registry.register_plugin_test_inner = None
    if not found:
        raise LookupError("no @register_plugin class or function in the file")
    ctx = PluginContext(name, spec.get("configurations") or {})
    instance = found[-1](name, ctx, dict(spec.get("configurations") or {}))
    return _user_callable(name, instance, spec.get("description", ""))


def _user_callable(name: str, instance: Any, description: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return instance(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = description or getattr(instance.__call__, "__doc__", None)
    try:
        call.__signature__ = inspect.signature(instance.__call__)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        pass
    call.plugin = instance  # type: ignore[attr-defined]
    return call


def bootstrap(specs: list[dict[str, Any]], workspace: str, namespace: dict[str, Any]) -> list[str]:
    """Load every plugin and bind its name in ``namespace``; print one line per failure."""
    global _workspace
    _workspace = workspace
    LOAD_ERRORS.clear()
    for old_name, old_callable in list(BOUND.items()):  # a re-bootstrap drops plugins no longer present
        if namespace.get(old_name) is old_callable:
            del namespace[old_name]
        del BOUND[old_name]
    registry = install_shim()
    for spec in specs:
        try:
            BOUND[spec["name"]] = namespace[spec["name"]] = load_plugin(spec, registry)
        except BaseException as exc:  # one bad plugin never stops the others
            where = spec.get("source_path") or spec["name"]
            line = f"taskweaver_lab: plugin {spec['name']} not loaded ({where}): {type(exc).__name__}: {exc}"
            LOAD_ERRORS.append(line)
            print(line)
    return list(LOAD_ERRORS)


def take_artifacts_json() -> str:
    """Return the artifacts added since the last call as JSON, and forget them."""
    taken = list(ARTIFACTS)
    ARTIFACTS.clear()
    return json.dumps(taken)


def _artifact_path(file_name: str) -> str:
    # Artifacts land in the workspace when the kernel can see it, else in the kernel's cwd.
    folder = _workspace if _workspace and os.path.isdir(_workspace) else os.getcwd()
    return os.path.join(folder, os.path.basename(file_name))


def _record_artifact(plugin: str, name: str, file_name: str, type_: str, desc: str, path: str) -> str:
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        shown = path
    if shown.startswith(".."):
        shown = path
    ARTIFACTS.append({"name": name, "path": shown, "file_name": file_name, "type": type_,
                      "desc": desc, "plugin": plugin})
    return shown


def _write_artifact(path: str, type_: str, val: Any) -> None:
    """Write by what the value can do, not by a fixed type table (plugins pass many kinds)."""
    if hasattr(val, "to_csv") and (type_ == "df" or path.endswith(".csv")):
        val.to_csv(path, index=False)
    elif hasattr(val, "savefig"):
        val.savefig(path)
    elif isinstance(val, (bytes, bytearray)):
        with open(path, "wb") as fh:
            fh.write(val)
    elif hasattr(val, "save") and type_ == "image":
        val.save(path)
    elif hasattr(val, "write_html") and type_ in ("chart", "html"):
        val.write_html(path)
    else:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(val if isinstance(val, str) else str(val))
