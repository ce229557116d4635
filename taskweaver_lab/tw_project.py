"""TaskWeaver projects unchanged: ``--TaskWeaverLab.app_dir=path/to/project``.

A TaskWeaver project folder holds ``taskweaver_config.json`` (flat dotted keys such as ``llm.api_base``),
``plugins/`` (YAML + .py pairs) and its examples (``examples/planner_examples``,
``examples/code_generator_examples``, or the older ``planner_examples/`` and ``codeinterpreter_examples/``).
``apply_project`` maps the keys we support onto the ``TaskWeaverLab`` settings and adds the project's plugin
and example folders. Precedence, highest first: a TaskWeaverLab setting given explicitly (command line,
config file, the API's dict), TaskWeaver's own environment variables (``LLM_API_KEY`` for ``llm.api_key``),
the project file, our defaults. Every key we do not support is named in one warning.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from traitlets import TraitError

from .config import TaskWeaverLab
from .steps import TaskWeaverLabError

CONFIG_FILE = "taskweaver_config.json"
_RESPONSE_FORMATS = {"json_object": "json_object", "json_schema": "json_schema", "text": "text", None: "text"}
_VERIFICATION_PREFIXES = ("code_interpreter.", "code_verification.")


def _retries_to_attempts(value: Any) -> int:
    return int(value) + 1  # TaskWeaver retries max_retry_count times after the first try


def _response_format(value: Any) -> str:
    if value not in _RESPONSE_FORMATS:
        raise ValueError(f"expected json_object, text or null, got {value!r}")
    return _RESPONSE_FORMATS[value]


def _str_list(value: Any) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list, got {value!r}")
    return [str(item) for item in items if str(item)]


# TaskWeaver key -> (our setting, conversion)
SUPPORTED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "llm.api_base": ("base_url", str),
    "llm.api_key": ("api_key", str),
    "llm.model": ("model", str),
    "llm.response_format": ("response_format", _response_format),
    "code_generator.auto_plugin_selection_topk": ("max_plugins_in_prompt", int),
    "code_interpreter.max_retry_count": ("max_attempts", _retries_to_attempts),
}
for _prefix in _VERIFICATION_PREFIXES:
    SUPPORTED[_prefix + "allowed_modules"] = ("allowed_modules", _str_list)
    SUPPORTED[_prefix + "blocked_functions"] = ("blocked_functions", _str_list)
# Keys read for folders or checks, not mapped onto one setting.
_FOLDER_KEYS = ("plugin.base_path", "planner.example_base_path", "code_generator.example_base_path")
_CHECKED_KEYS = ("llm.api_type", "llm.api_version", "session.roles", "code_interpreter.code_verification_on",
                 "code_verification.code_verification_on")


def read_project_config(app_dir: Path) -> dict[str, Any]:
    """The project's ``taskweaver_config.json`` as a dict (TaskWeaver's env overrides applied to the keys we use)."""
    path = app_dir / CONFIG_FILE
    if not path.is_file():
        raise TaskWeaverLabError(f"No {CONFIG_FILE} in {app_dir}: set TaskWeaverLab.app_dir to the TaskWeaver project "
                                 f"folder (the one holding {CONFIG_FILE}).")
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TaskWeaverLabError(f"Cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise TaskWeaverLabError(f"{path} must hold one JSON object of \"key\": value settings.")
    for key in list(SUPPORTED) + list(_FOLDER_KEYS) + list(_CHECKED_KEYS):
        env = os.environ.get(key.upper().replace(".", "_"))
        if env is not None:  # TaskWeaver's own rule: LLM_API_BASE overrides llm.api_base
            data[key] = None if env.lower() in ("null", "none", "nil") else env
    return data


def apply_project(config: TaskWeaverLab) -> list[str]:
    """Load ``config.app_dir`` into ``config`` (in place). Returns warnings (unsupported keys; a project where
    generated code could rewrite it); raises for a bad project."""
    if not config.app_dir:
        return []
    app_dir = Path(config.app_dir).expanduser().resolve()
    if not app_dir.is_dir():
        raise TaskWeaverLabError(f"TaskWeaverLab.app_dir {config.app_dir!r} is not a folder: point it at a TaskWeaver "
                                 f"project (the folder holding {CONFIG_FILE}).")
    data = read_project_config(app_dir)
    explicit = set(config.config.get("TaskWeaverLab", {}))
    _apply_settings(config, data, explicit, app_dir)
    ignored = _apply_checks(config, data, explicit)
    _add_folders(config, data, app_dir)
    known = set(SUPPORTED) | set(_FOLDER_KEYS) | set(_CHECKED_KEYS)
    ignored += sorted(key for key in data if key not in known)
    warnings = [f"{app_dir / CONFIG_FILE}: not supported here, ignored: {', '.join(ignored)}."] if ignored else []
    return warnings + _writable_warning(app_dir)


def _writable_warning(app_dir: Path) -> list[str]:
    """The project's config (its endpoint, its key) and plugin code are trusted at start-up: a project inside the
    folder notebooks run in can be rewritten by generated code (the guard lets agent code write there)."""
    here = Path.cwd().resolve()
    if not app_dir.is_relative_to(here):
        return []
    return [f"The TaskWeaver project {app_dir} is inside the folder Jupyter runs in ({here}): code generated in a "
            "notebook there could change its taskweaver_config.json or plugins before the next start; keep the "
            "project outside the notebooks' folders."]


def _apply_settings(config: TaskWeaverLab, data: dict[str, Any], explicit: set[str], app_dir: Path) -> None:
    for key, (name, convert) in SUPPORTED.items():
        if key not in data or name in explicit:
            continue
        if data[key] in (None, "") and key != "llm.response_format":
            continue  # null or "" (TaskWeaver's stock project has "llm.api_key": ""): our default (env) stays
        try:
            setattr(config, name, convert(data[key]))
        except (TraitError, TaskWeaverLabError, ValueError, TypeError) as exc:
            raise TaskWeaverLabError(f"{app_dir / CONFIG_FILE}: bad value for {key!r} ({exc}).") from None


def _apply_checks(config: TaskWeaverLab, data: dict[str, Any], explicit: set[str]) -> list[str]:
    """Keys whose meaning we honour only in part; what we cannot honour is named."""
    ignored = []
    api_type = data.get("llm.api_type")
    if api_type == "azure":  # Azure OpenAI: llm.api_base is the resource, llm.model the deployment
        if "azure_endpoint" not in explicit and data.get("llm.api_base"):
            config.azure_endpoint = str(data["llm.api_base"])
        if "azure_api_version" not in explicit and data.get("llm.api_version"):
            config.azure_api_version = str(data["llm.api_version"])
    elif api_type not in (None, "openai"):
        ignored.append(f"llm.api_type={api_type} (OpenAI-compatible endpoints and Azure OpenAI with an api key only)")
    if data.get("llm.api_version") and api_type != "azure":
        ignored.append("llm.api_version (used with llm.api_type=azure only)")
    for prefix in _VERIFICATION_PREFIXES:
        if data.get(prefix + "code_verification_on") is False:
            ignored.append(f"{prefix}code_verification_on=false (generated code is always verified here)")
    roles = data.get("session.roles")
    if isinstance(roles, list) and "code_interpreter_plugin_only" in roles and "plugin_only" not in explicit:
        config.plugin_only = True
    return ignored


def _project_path(value: Any, app_dir: Path) -> Path:
    text = str(value).replace("${AppBaseDir}", str(app_dir))
    path = Path(text).expanduser()
    return path if path.is_absolute() else app_dir / path


def _add_folders(config: TaskWeaverLab, data: dict[str, Any], app_dir: Path) -> None:
    """The project's plugins and examples come before folders named explicitly (which override them by name)."""
    plugins = _project_path(data.get("plugin.base_path") or "plugins", app_dir)
    if plugins.is_dir() or data.get("plugin.base_path"):
        config.plugin_dirs = [str(plugins)] + [d for d in config.plugin_dirs if Path(d).resolve() != plugins]
    given = [data.get("planner.example_base_path"), data.get("code_generator.example_base_path")]
    layouts = [app_dir / name for name in ("examples", "planner_examples", "codeinterpreter_examples")]  # newer, older
    folders: list[Path] = []
    for folder in [_project_path(g, app_dir) for g in given if g] + [f for f in layouts if f.is_dir()]:
        inside = any(folder.resolve().is_relative_to(f.resolve()) for f in folders)  # loading is recursive
        if not inside and folder.resolve() not in {Path(d).resolve() for d in config.example_dirs}:
            folders.append(folder)
    config.example_dirs = [str(f) for f in folders] + list(config.example_dirs)
