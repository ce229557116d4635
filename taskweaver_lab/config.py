"""All knobs, declared once as traitlets in the ``TaskWeaverLab`` config section.

The same section is read by ``jupyter lab``/``jupyter server`` (server extension),
``jupyter taskweaver`` (CLI), the ``%%taskweaver`` magic and the Python API's
``config`` dict (ARCHITECTURE A2).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from traitlets import Bool, Enum, Float, Int, List, Unicode, default, validate
from traitlets.config import Config, Configurable
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader, ConfigFileNotFound

from .steps import TaskWeaverLabError

# Env names scrubbed from every kernel we start or bootstrap (secrets stay in the server).
DEFAULT_SCRUB_ENV = [
    "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_KEY", "ANTHROPIC_API_KEY",
    "OPENAI_ORG_ID", "OPENAI_ORGANIZATION", "JUPYTER_TOKEN", "JPY_API_TOKEN", "TASKWEAVER_LAB_*",
    "CODEGEN_API_KEY", "LLM_API_KEY",
    # common credentials of other services (issue 11): never in a kernel, so no template can reach them
    "AWS_*", "AZURE_*", "GOOGLE_*", "GCLOUD_*", "HF_TOKEN", "HF_*TOKEN*", "HUGGING*", "GITHUB_TOKEN", "GH_*",
    "GITLAB_*", "ANTHROPIC_*", "MISTRAL_*", "COHERE_*", "GROQ_*", "TOGETHER_*", "OPENROUTER_*", "DEEPSEEK_*",
    "*_API_KEY", "*_APIKEY", "*_TOKEN", "*_SECRET*", "*PASSWORD*", "*_PASSWD", "*_CREDENTIALS", "*_ACCESS_KEY*",
]


class TaskWeaverLab(Configurable):
    """Configuration of taskweaver_lab (``c.TaskWeaverLab.<name> = ...``)."""

    # --- LLM endpoint and models (A2) ---
    base_url = Unicode(help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8013/v1. Env: OPENAI_BASE_URL.").tag(config=True)
    api_key = Unicode(help="API key for base_url. Env: OPENAI_API_KEY. Never sent to kernels or browsers.").tag(config=True)
    model = Unicode("gpt-4o-mini", help="Model name for every role unless a role overrides it.").tag(config=True)
    planner_model = Unicode("", help="Model name of the Planner (default: model).").tag(config=True)
    code_generator_model = Unicode("", help="Model name of the Code Generator (default: model).").tag(config=True)
    response_format = Enum(
        ["auto", "json_schema", "json_object", "text"], "auto",
        help="How to ask for structured replies; 'auto' tries json_schema, then json_object, then text.",
    ).tag(config=True)
    stream = Bool(True, help="Stream LLM replies (live text in the UI).").tag(config=True)
    llm_timeout = Float(120.0, help="Seconds to wait for a connection to the LLM endpoint (at most 30 are used); "
                        "the whole request, a slow first token included, is bounded by llm_deadline.").tag(config=True)
    llm_retries = Int(3, help="Retries (with backoff) on 429, 5xx and timeouts.").tag(config=True)
    llm_deadline = Float(
        300.0, help="Seconds one LLM request may take in all, retries included, however slowly the endpoint sends "
                    "(a local model can take minutes over a long prompt); 0: no limit.",
    ).tag(config=True)
    llm_rate_limit_wait = Float(
        60.0, help="Most seconds to wait in all, per request, when the endpoint answers 429 with Retry-After.",
    ).tag(config=True)
    llm_progress_interval = Float(
        15.0, help="Seconds between 'still waiting for the model' notices while its reply has not started; 0: none.",
    ).tag(config=True)
    azure_endpoint = Unicode(
        help="Azure OpenAI resource endpoint, e.g. https://NAME.openai.azure.com. When set, it is used instead of "
             "base_url, model / planner_model / code_generator_model name the deployments, and api_key (or env "
             "AZURE_OPENAI_API_KEY) goes in the api-key header.",
    ).tag(config=True)
    azure_api_version = Unicode("2024-10-21", help="The api-version of Azure OpenAI requests.").tag(config=True)
    temperature = Float(0.0, help="Sampling temperature for both roles.").tag(config=True)
    allow_user_base_url = Bool(
        True, help="Let each user point their turns at their own OpenAI-compatible endpoint (Settings > TaskWeaver > "
                   "LLM base URL). The server's api_key is never sent to such an endpoint.",
    ).tag(config=True)
    allowed_models = List(
        Unicode(), help="Model names users may pick in their settings (empty: any name the endpoint serves).",
    ).tag(config=True)
    llm_cassette = Unicode("", help="Path of a record/replay file of LLM replies (reproducible notebooks).").tag(config=True)
    llm_cassette_mode = Enum(["off", "record", "replay"], "off", help="Cassette mode.").tag(config=True)

    # --- The loop ---
    max_attempts = Int(3, help="Code attempts per plan step (verification rejections and errors).").tag(config=True)
    max_llm_calls_per_round = Int(20, help="Hard cap on LLM calls in one user round.").tag(config=True)
    execution_timeout = Float(600.0, help="Seconds one generated cell may run before it is interrupted.").tag(config=True)
    summary_chars = Int(1500, help="Bound on the execution summary the LLM sees, in characters.").tag(config=True)
    approval = Enum(["auto", "approve"], "auto", help="Run verified code automatically or ask first.").tag(config=True)
    data_preview_files = Int(
        3, help="Data files (CSV/TSV, Excel, Parquet, JSON, SQLite; those the request names first, then others in the "
                "notebook's folder) whose columns, dtypes and first rows the Code Generator sees before writing code "
                "(about 1,200 characters in all, whatever the data's size). 0 turns the preview off.",
    ).tag(config=True)
    max_output_chars = Int(
        100_000, help="Characters of one output of a generated cell kept in the notebook record and sent to the chat "
                      "(the middle of a longer text is cut, with a note saying how much; an image or other data over "
                      "10 times this is replaced by a note). Like Jupyter's own output limits.",
    ).tag(config=True)
    resume_timeout = Float(
        120.0, help="Seconds in all for re-running a resumed notebook's code cells in a fresh kernel (cells that "
                    "failed or were interrupted are never re-run); what is left after that is not re-run.",
    ).tag(config=True)
    max_message_chars = Int(
        32_000, help="Longest user message accepted, in characters (a longer one is refused before it reaches the "
                     "LLM: put large data in a file in the notebook's folder and name it).",
    ).tag(config=True)

    # --- Plugins and examples ---
    plugin_dirs = List(Unicode(), help="Extra folders of TaskWeaver-format plugins (YAML + .py).").tag(config=True)
    load_builtin_plugins = Bool(True, help="Load the built-in plugins (sql_pull_data, anomaly_detection).").tag(config=True)
    max_plugins_in_prompt = Int(5, help="Above this many plugins, only the most relevant go into the prompt.").tag(config=True)
    example_dirs = List(Unicode(), help="Folders of TaskWeaver example YAMLs (planner and code generator).").tag(config=True)
    plugin_only = Bool(False, help="Only plugin calls and plain assignments are allowed in generated code.").tag(config=True)

    # --- Security ---
    allowed_modules = List(Unicode(), help="Importable modules (empty: the built-in allowlist).").tag(config=True)
    blocked_functions = List(Unicode(), help="Extra function names generated code may not use.").tag(config=True)
    guard = Bool(True, help="Install the runtime audit-hook guard in the kernel.").tag(config=True)
    scrub_env = List(Unicode(), DEFAULT_SCRUB_ENV, help="Env names (fnmatch patterns) removed from kernels.").tag(config=True)
    sandbox = Enum(["none", "landlock"], "none", help="Run agent kernels under an OS sandbox.").tag(config=True)
    auto_install = Bool(
        False, help="When generated code fails with ModuleNotFoundError for a package in auto_install_packages, the "
                    "server (never the kernel) pip-installs it into the kernel's Python and runs the step again; the "
                    "chat and the record say so. Off by default.",
    ).tag(config=True)
    auto_install_packages = List(
        Unicode(), help="What auto_install may install: 'name' (module and pip package alike) or 'module=requirement', "
                        "e.g. ['tabulate', 'sklearn=scikit-learn', 'yaml=PyYAML==6.0.2']. Empty: nothing.",
    ).tag(config=True)
    auto_install_pip_args = List(
        Unicode(), help="Extra pip arguments of auto_install, e.g. ['--index-url', 'https://pypi.internal/simple'].",
    ).tag(config=True)

    # --- Ecosystem: the Codegen backend, TaskWeaver projects, tracing (issues 14, 15) ---
    code_generator_backend = Enum(
        ["llm", "codegen"], "llm",
        help="Who writes the code: 'llm' (the Code Generator role on base_url) or 'codegen' (an external Codegen "
             "service at codegen_api_endpoint); either way the code is verified, guarded and corrected the same way.",
    ).tag(config=True)
    codegen_api_endpoint = Unicode(help="URL the Codegen backend POSTs to. Env: CODEGEN_API_ENDPOINT.").tag(config=True)
    codegen_api_key = Unicode(help="Bearer key of the Codegen service. Env: CODEGEN_API_KEY. Never sent to kernels.").tag(config=True)
    app_dir = Unicode(
        "", help="A TaskWeaver project folder: its taskweaver_config.json (llm.*, code_interpreter.*, planner and "
                 "code generator keys), plugins/ and examples/ are loaded; settings given here explicitly win.",
    ).tag(config=True)
    trace_dir = Unicode("", help="Folder of per-session JSONL traces (LLM calls, verification, execution; never "
                                 "prompts or keys). Empty: off.").tag(config=True)
    usage_log = Unicode("", help="File to which each finished turn appends one JSON line (user, time, path, calls, "
                                 "prompt/completion tokens, models, state) for the admin; '{user}' in the path is the "
                                 "server's user (JUPYTERHUB_USER, else the OS account), e.g. "
                                 "/var/log/taskweaver/{user}.jsonl. Empty: off. Never prompts or keys.").tag(config=True)
    trace_otel = Bool(False, help="Also emit OpenTelemetry spans (when the opentelemetry packages are installed; "
                                  "configure the exporter with the usual OTEL_* setup).").tag(config=True)

    @default("base_url")
    def _default_base_url(self) -> str:
        return os.environ.get("OPENAI_BASE_URL", "")

    @default("api_key")
    def _default_api_key(self) -> str:
        return os.environ.get("OPENAI_API_KEY", "")

    @default("codegen_api_endpoint")
    def _default_codegen_endpoint(self) -> str:
        return os.environ.get("CODEGEN_API_ENDPOINT", "")

    @default("codegen_api_key")
    def _default_codegen_key(self) -> str:
        return os.environ.get("CODEGEN_API_KEY", "")

    @validate("data_preview_files")
    def _not_negative(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TaskWeaverLabError(f"TaskWeaverLab.data_preview_files must be 0 (off) or more, got {proposal['value']}.")
        return proposal["value"]

    @validate("max_attempts", "max_llm_calls_per_round", "max_output_chars", "max_message_chars")
    def _positive(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TaskWeaverLabError(f"TaskWeaverLab.{proposal['trait'].name} must be at least 1, got {proposal['value']}.")
        return proposal["value"]

    def model_for(self, role: str) -> str:
        return {"planner": self.planner_model, "code_generator": self.code_generator_model}.get(role) or self.model

    @property
    def endpoint_configured(self) -> bool:
        """An LLM endpoint is set: a base URL, an API key (OpenAI's default URL), or an Azure OpenAI resource."""
        return bool(self.base_url or self.api_key or self.azure_endpoint)

    def check_endpoint(self) -> None:
        """Raise the first-run message when no LLM endpoint is configured."""
        if not self.endpoint_configured:
            raise TaskWeaverLabError(NO_ENDPOINT_HELP)


NO_ENDPOINT_HELP = (
    "No LLM endpoint is configured. Set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one), or "
    "c.TaskWeaverLab.base_url / api_key in jupyter_server_config.py, or --TaskWeaverLab.base_url=... on the "
    "command line (restart the Jupyter server after changing its config). No key? `jupyter taskweaver local-model "
    "start` serves a small model offline: then base_url=http://127.0.0.1:8013/v1 and model=local-coder."
)
# The sidebar adds this: a user can also pick an endpoint for their own turns (allow_user_base_url).
SETTINGS_HINT = (
    " Or, for your own turns only, set 'LLM base URL' (and the model names) in Settings > Settings Editor > TaskWeaver."
)

# Set in the kernels of a server running the extension: where %%taskweaver joins the notebook's session.
SERVER_URL_ENV = "TASKWEAVER_LAB_SERVER_URL"
CONFIG_FILE_NAMES = ("jupyter_taskweaver_config", "jupyter_server_config")
# A config file the user names explicitly (the only way a file outside the Jupyter config dirs is read).
CONFIG_FILE_ENV = "TASKWEAVER_LAB_CONFIG"


def load_config_files(extra_dirs: list[str] | None = None, config_file: str | None = None) -> Config:
    """Read the TaskWeaverLab section from the Jupyter config dirs (lowest priority first), then ``config_file``
    or $TASKWEAVER_LAB_CONFIG. Never from the working directory: agent code can write there (issue 11)."""
    from jupyter_core.paths import jupyter_config_path

    merged = Config()
    dirs = list(reversed(jupyter_config_path())) + list(extra_dirs or [])
    files = [Path(d) / (name + ext) for d in dirs for name in CONFIG_FILE_NAMES for ext in (".json", ".py")]
    explicit = config_file or os.environ.get(CONFIG_FILE_ENV, "")
    if explicit and not Path(explicit).is_file():
        raise TaskWeaverLabError(f"Config file {explicit} (from {'--config' if config_file else CONFIG_FILE_ENV}) "
                                 "does not exist: give the path of a .py or .json file.")
    for path in files + ([Path(explicit)] if explicit else []):
        if not path.is_file():
            continue
        loader_cls = JSONFileConfigLoader if path.suffix == ".json" else PyFileConfigLoader
        try:
            merged.merge(loader_cls(path.name, path=str(path.parent)).load_config())
        except ConfigFileNotFound:
            continue
        except Exception as exc:  # a broken user config file must say where it is
            raise TaskWeaverLabError(f"Cannot read {path}: {exc}") from exc
    _warn_ignored_local_config(files + ([Path(explicit)] if explicit else []))
    section = Config()
    if "TaskWeaverLab" in merged:
        section.TaskWeaverLab = merged.TaskWeaverLab
    return section


def _warn_ignored_local_config(read: list[Path]) -> None:
    local = [Path.cwd() / (n + e) for n in CONFIG_FILE_NAMES[:1] for e in (".py", ".json")]
    for path in local:
        if path.is_file() and path not in read:
            logging.getLogger("taskweaver_lab").warning(
                "%s is not loaded (a config file in the working directory could have been written by generated "
                "code): pass it explicitly with %s=%s or move it to ~/.jupyter.", path, CONFIG_FILE_ENV, path)


def make_config(overrides: dict[str, Any] | None = None, base: Config | None = None) -> TaskWeaverLab:
    """Build the config from files (or ``base``) plus a plain dict of overrides, validating names."""
    config = Config(base) if base is not None else load_config_files()
    known = set(TaskWeaverLab.class_trait_names(config=True))
    for name, value in (overrides or {}).items():
        if name not in known:
            raise TaskWeaverLabError(f"Unknown TaskWeaverLab setting {name!r}. Known: {', '.join(sorted(known))}.")
        config.TaskWeaverLab[name] = value
    try:
        return TaskWeaverLab(config=config)
    except TaskWeaverLabError:
        raise
    except Exception as exc:  # traitlets' TraitError: name the setting and the bad value
        raise TaskWeaverLabError(f"Bad TaskWeaverLab setting: {exc}") from exc
