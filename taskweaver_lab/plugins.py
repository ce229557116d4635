"""TaskWeaver-format plugins: load and validate, rank per request, ship into the kernel.

A plugin is a YAML spec (name, enabled, required, plugin_only, description, examples, parameters,
returns, configurations) plus a Python file of the same stem holding a ``@register_plugin`` class
(TaskWeaver's format, loaded unchanged). Layouts: ``dir/name.yaml`` or ``dir/name/name.yaml``.
Later directories override earlier ones by plugin name, so a user's plugin can replace a built-in.

Server side this module only reads files; plugin code runs in the kernel, through
``kernel_bootstrap_code`` and the stdlib-only ``plugin_runtime`` it embeds.
"""
from __future__ import annotations

import ast
import builtins
import json
import keyword
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from .plugin_index import index_for
from .verifier import AST_LOCK

RUNTIME_MODULE = "_taskweaver_lab_plugins"
# libyaml's safe loader is ~10x faster than the pure-Python one (1,000 plugins load in a blink)
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_REQUIRED_FIELDS = ("name", "description", "parameters", "returns")
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PluginSpec:
    name: str
    description: str
    parameters: tuple[dict, ...]
    returns: tuple[dict, ...]
    enabled: bool
    required: bool
    plugin_only: bool
    examples: str
    configurations: dict
    yaml_path: str
    source_path: str
    source: str  # the .py text, shipped into the kernel

    def signature(self) -> str:
        """One compact line, e.g. ``f(query: str, database: str) -> (df: DataFrame, description: str)``."""
        params = ", ".join(_param_text(p) for p in self.parameters)
        rets = ", ".join(f"{r['name']}: {r.get('type', 'Any')}" for r in self.returns)
        if len(self.returns) == 1:
            rets = str(self.returns[0].get("type", "Any"))
        arrow = f" -> ({rets})" if len(self.returns) > 1 else f" -> {rets}" if rets else ""
        return f"{self.name}({params}){arrow}"

    def prompt_text(self) -> str:
        """Signature, the description as one paragraph, a note per parameter, the YAML's example."""
        lines = [self.signature(), "  " + _one_line(self.description)]
        for param in self.parameters:
            if _one_line(param.get("description", "")):
                lines.append(f"  - {param['name']}: {_one_line(param['description'])}")
        if self.examples.strip():
            lines.append("  e.g. " + _one_line(self.examples))
        return "\n".join(lines)


def _param_text(param: dict) -> str:
    text = f"{param['name']}: {param.get('type', 'Any')}"
    if "default" in param:
        return f"{text} = {param['default']!r}"
    return text if param.get("required", True) else f"{text} = None"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def builtin_plugins_dir() -> Path:
    """Built-ins: ``taskweaver_lab/builtin_plugins`` in a wheel, top-level ``plugins/`` in a checkout."""
    package_dir = Path(__file__).resolve().parent
    installed = package_dir / "builtin_plugins"
    return installed if installed.is_dir() else package_dir.parent / "plugins"


def load_plugins(dirs: Sequence[str], include_builtins: bool = True) -> tuple["PluginSet", list[str]]:
    """Load every plugin under ``dirs`` (built-ins first). Returns (specs, errors); never raises for a bad plugin."""
    folders = ([str(builtin_plugins_dir())] if include_builtins else []) + [str(d) for d in dirs]
    stamp = files_stamp(folders)  # before reading: a file changed while we read makes the next check reload
    by_name: dict[str, PluginSpec] = {}
    errors: list[str] = []
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            errors.append(f"{root}: plugin directory not found")
            continue
        seen_here: set[str] = set()
        for yaml_path in _yaml_files(root):
            spec, problems = load_plugin(yaml_path)
            errors.extend(problems)
            if spec is None:
                continue
            if spec.name in seen_here:
                errors.append(f"{yaml_path}: field 'name': plugin {spec.name!r} is defined twice in {root}")
                continue
            seen_here.add(spec.name)
            by_name[spec.name] = spec  # a later directory overrides an earlier one
    loaded = PluginSet(list(by_name.values()))
    loaded.folders, loaded.stamp = tuple(folders), stamp
    return loaded, errors


def _yaml_files(root: Path) -> list[Path]:
    found = [p for pattern in ("*.yaml", "*.yml", "*/*.yaml", "*/*.yml") for p in root.glob(pattern)]
    return sorted(p for p in found if p.is_file())


def load_plugin(yaml_path: Path) -> tuple[PluginSpec | None, list[str]]:
    """Load one YAML + .py pair; (None, errors) when it cannot be used."""
    try:
        data = yaml.load(yaml_path.read_text(encoding="utf-8"), Loader=YAML_LOADER)  # noqa: S506 (a safe loader)
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{yaml_path}: cannot read: {exc}"]
    except yaml.YAMLError as exc:
        return None, [f"{yaml_path}: not valid YAML: {_one_line(str(exc))}"]
    if not isinstance(data, dict):
        return None, [f"{yaml_path}: expected a mapping of plugin fields, got {type(data).__name__}"]
    errors = [f"{yaml_path}: {problem}" for problem in _validate_fields(data)]
    if errors:
        return None, errors
    source_path, source, problem = _read_implementation(yaml_path, data["name"], data.get("parameters") or ())
    if problem:
        return None, [problem]
    return _spec_from(data, yaml_path, source_path, source), []


def _validate_fields(data: dict[str, Any]) -> list[str]:
    """Problems as "field 'x': what is wrong"; empty when the YAML is usable."""
    problems = [f"field '{name}': missing" for name in _REQUIRED_FIELDS if name not in data]
    name = data.get("name")
    if "name" in data and not (isinstance(name, str) and _NAME_PATTERN.match(name)):
        problems.append(f"field 'name': {name!r} is not a Python identifier (letters, digits, _)")
    elif isinstance(name, str) and (keyword.iskeyword(name) or hasattr(builtins, name)):
        problems.append(f"field 'name': {name!r} would shadow a Python keyword or built-in")
    if "description" in data and not (isinstance(data["description"], str) and data["description"].strip()):
        problems.append("field 'description': must be a non-empty string")
    for field in ("enabled", "required", "plugin_only"):
        if field in data and not isinstance(data[field], bool):
            problems.append(f"field '{field}': must be true or false, got {data[field]!r}")
    if not isinstance(data.get("examples") or "", str):
        problems.append("field 'examples': must be a string")
    if not isinstance(data.get("configurations") or {}, dict):
        problems.append("field 'configurations': must be a mapping")
    for field in ("parameters", "returns"):
        problems.extend(_validate_field_list(field, data.get(field)))
    return problems


def _validate_field_list(field: str, items: Any) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list):
        return [f"field '{field}': must be a list of {{name, type, description}}"]
    problems = []
    for index, item in enumerate(items):
        where = f"field '{field}[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}': must be a mapping with name, type, description")
            continue
        for key in ("name", "type"):
            if not (isinstance(item.get(key), str) and item[key].strip()):
                problems.append(f"{where}.{key}': missing or not a string")
        if not isinstance(item.get("description", ""), str):
            problems.append(f"{where}.description': must be a string")
        if field == "parameters" and isinstance(item.get("name"), str) and not _NAME_PATTERN.match(item["name"]):
            problems.append(f"{where}.name': {item['name']!r} is not a Python identifier")
    return problems


def _read_implementation(yaml_path: Path, name: str, yaml_parameters: Sequence[dict] = ()) -> tuple[str, str, str]:
    """Find and check the .py next to the YAML: (path, source, problem)."""
    candidates = [yaml_path.with_suffix(".py"), yaml_path.with_name(f"{name}.py")]
    py_path = next((p for p in candidates if p.is_file()), None)
    if py_path is None:
        return "", "", f"{yaml_path}: implementation file {candidates[0].name} not found next to it"
    try:
        source = py_path.read_text(encoding="utf-8")
        with AST_LOCK:  # see verifier.AST_LOCK (a CPython 3.11 threading bug)
            tree = ast.parse(source, filename=str(py_path))
    except SyntaxError as exc:
        return "", "", f"{py_path}: line {exc.lineno}: SyntaxError: {exc.msg}"
    except (OSError, UnicodeDecodeError) as exc:
        return "", "", f"{py_path}: cannot read: {exc}"
    registered = _registered(tree)
    if not registered:
        return "", "", f"{py_path}: no @register_plugin class or function (TaskWeaver plugin format)"
    mismatch = signature_mismatch(registered[-1], yaml_parameters)  # the runtime binds the last one registered
    if mismatch:
        return "", "", (f"{py_path}: {mismatch}, so calls written from {yaml_path.name} would fail; make the YAML's "
                        "parameters and the function's agree.")
    return str(py_path), source, ""


def _registered(tree: ast.Module) -> list[ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]:
    """Decorated classes and functions at the top of the module or one block deep (``if``/``try``): where
    TaskWeaver plugins register (a full ``ast.walk`` cost ~1 ms per plugin)."""
    nodes = list(tree.body)
    for block in tree.body:
        for field in ("body", "orelse", "finalbody", "handlers"):
            nodes += [n for n in getattr(block, field, ()) if not isinstance(block, (ast.ClassDef, ast.FunctionDef))]
    found = []
    for node in nodes:
        for decorator in getattr(node, "decorator_list", []):
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if getattr(target, "id", getattr(target, "attr", "")) == "register_plugin":
                found.append(node)
    return sorted(found, key=lambda node: node.lineno)


def signature_mismatch(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef, yaml_parameters: Sequence[Any]) -> str:
    """What keeps calls written from the YAML's parameters from fitting the registered function ('' when they fit,
    by keyword and by position). A class whose ``__call__`` is inherited is not checked here."""
    func = node if not isinstance(node, ast.ClassDef) else next(
        (n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "__call__"), None)
    if func is None:
        return ""
    where = f"{node.name}.__call__" if isinstance(node, ast.ClassDef) else f"{func.name}()"
    args = func.args
    positional = [a.arg for a in args.posonlyargs + args.args][1 if isinstance(node, ast.ClassDef) else 0:]
    required = positional[:len(positional) - len(args.defaults)]
    required += [a.arg for a, default in zip(args.kwonlyargs, args.kw_defaults) if default is None]
    names = positional + [a.arg for a in args.kwonlyargs]
    declared = {str(p["name"]): p for p in yaml_parameters if isinstance(p, dict) and isinstance(p.get("name"), str)}
    takes = f"it takes: {', '.join(names) or 'no parameters'}"
    unknown = [name for name in declared if name not in names]
    if unknown and args.kwarg is None:
        return f"the YAML's parameter '{unknown[0]}' is not a parameter of {where} ({takes})"
    missing = [name for name in required if name not in declared]
    if missing:
        return f"{where} requires '{missing[0]}', which the YAML's parameters do not declare ({takes})"
    optional = [name for name in required if declared[name].get("required", True) is False]
    if optional:
        return f"the YAML marks '{optional[0]}' optional (required: false) but {where} has no default for it"
    in_yaml_order = [name for name in declared if name in positional]
    if in_yaml_order != [name for name in positional if name in declared]:
        return f"the YAML lists the parameters in another order than {where} ({takes}), so positional calls mix them up"
    return ""


def _spec_from(data: dict[str, Any], yaml_path: Path, source_path: str, source: str) -> PluginSpec:
    return PluginSpec(
        name=data["name"],
        description=data["description"].strip(),
        parameters=tuple(dict(p) for p in data.get("parameters") or ()),
        returns=tuple(dict(r) for r in data.get("returns") or ()),
        enabled=data.get("enabled", True),
        required=data.get("required", False),
        plugin_only=data.get("plugin_only", False),
        examples=data.get("examples") or "",
        configurations=dict(data.get("configurations") or {}),
        yaml_path=str(yaml_path),
        source_path=source_path,
        source=source,
    )


# --- Lexical ranking (shared with examples.py) ---------------------------------------------

_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in into is it its me my of on or "
    "our please show that the their them then there these this to use using was we what when which "
    "will with you your give get let want need some all any".split()
)


def tokenize(text: str) -> list[str]:
    """Lowercase words (identifiers split on _ and camelCase), stopwords dropped, crudely stemmed."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    words = re.findall(r"[a-z0-9]+", spaced.lower())
    return [_stem(w) for w in words if w not in _STOPWORDS and len(w) > 1]


def _stem(word: str) -> str:
    # Consistency matters more than linguistics: both sides of a match pass through here.
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + replacement
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def lexical_rank(documents: Sequence[str], query: str) -> list[tuple[int, float]]:
    """BM25 (k1=1.2, b=0.75) scores of ``documents`` for ``query``: [(index, score)], best first, ties by index."""
    docs = [Counter(tokenize(d)) for d in documents]
    if not docs:
        return []
    avg_len = sum(sum(c.values()) for c in docs) / len(docs) or 1.0
    doc_freq = Counter(term for c in docs for term in c)
    scores = []
    for index, counts in enumerate(docs):
        length = sum(counts.values())
        score = 0.0
        for term in set(tokenize(query)):
            tf = counts.get(term, 0)
            if tf:
                idf = math.log(1 + (len(docs) - doc_freq[term] + 0.5) / (doc_freq[term] + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg_len))
        scores.append((index, score))
    return sorted(scores, key=lambda pair: (-pair[1], pair[0]))


def select_plugins(specs: Sequence[PluginSpec], query: str, limit: int) -> list[PluginSpec]:
    """The plugins for one prompt, in load order (stable prompts).

    All enabled ones when there are at most ``limit``; otherwise the ``required`` ones plus the best
    matches for ``query`` (only those that match at all) up to ``limit`` in total (``plugin_index.py``:
    an index built once per plugin set). Plugins the kernel could not load (``PluginSet.unavailable``)
    are never offered.
    """
    unavailable = getattr(specs, "unavailable", {})
    offered = [s.enabled and s.name not in unavailable for s in specs]
    enabled = [s for s, ok in zip(specs, offered) if ok]
    if len(enabled) <= limit:
        return enabled
    room = max(0, limit - sum(s.required for s in enabled))
    skip = {i for i, (s, ok) in enumerate(zip(specs, offered)) if not ok or s.required}
    chosen = set(index_for(specs).top(query, room, skip))
    return [s for i, (s, ok) in enumerate(zip(specs, offered)) if ok and (s.required or i in chosen)]


# --- What the kernel said -----------------------------------------------------------------

class PluginSet(list):  # type: ignore[type-arg]
    """The loaded plugins (``PluginSpec`` in load order) with where they came from and what a kernel said.

    ``unavailable``: plugin name -> the sentence a user sees, for plugins whose file raised when the last
    kernel set up with this set imported it; they are not offered to the LLM. ``changed()``: the plugin
    files (or folders) differ from when the set was loaded, so it should be loaded again.
    """

    def __init__(self, specs: Sequence[PluginSpec] = (), folders: Sequence[str] = ()) -> None:
        super().__init__(specs)
        self.folders = tuple(folders)
        self.unavailable: dict[str, str] = {}
        self.stamp = files_stamp(self.folders)

    def changed(self) -> bool:
        return files_stamp(self.folders) != self.stamp


def files_stamp(folders: Sequence[str]) -> tuple[Any, ...]:
    """(path, mtime, size) of every plugin folder and file, one level of sub-folders deep (the layouts we load)."""
    stamp: list[Any] = []
    pending = [(Path(folder).expanduser(), 1) for folder in folders]
    while pending:
        folder, depth = pending.pop()
        try:
            with os.scandir(folder) as entries:
                stamp.append((str(folder), folder.stat().st_mtime_ns))
                for entry in entries:
                    if entry.is_dir() and depth > 0:
                        pending.append((Path(entry.path), depth - 1))
                    elif entry.name.endswith((".yaml", ".yml", ".py")):
                        info = entry.stat()
                        stamp.append((entry.path, info.st_mtime_ns, info.st_size))
        except OSError:
            stamp.append((str(folder), None))
    return tuple(sorted(stamp, key=lambda item: item[0]))


_KERNEL_FAILURE = re.compile(r"^taskweaver_lab: plugin (\w+) not loaded \((.*?)\): (.*)$")


def note_kernel_setup(plugins: Sequence[PluginSpec], printed: Sequence[str]) -> list[str]:
    """Read what a kernel printed while loading ``plugins``: the ones that failed become unavailable (a
    ``PluginSet`` keeps them out of prompts until a kernel loads them). Returns what to tell the user."""
    failed: dict[str, str] = {}
    for line in printed:
        match = _KERNEL_FAILURE.match(line.strip())
        if match:
            name, where, detail = match.groups()
            failed[name] = (f"Plugin {name} ({where}) failed to load in the kernel ({detail}), so it is not offered to "
                            "the LLM; install what it needs in the kernel's environment or fix the file, then restart "
                            "the kernel.")
    if isinstance(plugins, PluginSet):
        plugins.unavailable = failed
    return list(failed.values())


def set_up_kernel(executor: Any, plugins: Sequence[PluginSpec], use_guard: bool) -> list[str]:
    """``executor.setup`` (helper, guard, plugins), then what the kernel said about the plugins (see above)."""
    before = len(executor.state.setup_messages)
    executor.setup(plugins, use_guard)
    return note_kernel_setup(plugins, executor.state.setup_messages[before:])


# --- Into the kernel ---------------------------------------------------------------------

def kernel_bootstrap_code(specs: Sequence[PluginSpec], workspace: str) -> str:
    """Self-contained Python source that loads the enabled plugins into a kernel (run once, silently).

    It is ONE ``exec`` statement over a string literal in a throwaway namespace, so the user
    namespace gains exactly the plugin names. Helpers live in ``sys.modules['_taskweaver_lab_plugins']``.
    """
    runtime_source = (Path(__file__).resolve().parent / "kernel_side" / "plugin_runtime.py").read_text(encoding="utf-8")
    payload = [
        {"name": s.name, "source": s.source, "source_path": s.source_path,
         "description": _one_line(s.description), "configurations": s.configurations}
        for s in specs if s.enabled
    ]
    inner = "\n".join([
        "import json, sys, types",
        f"module = types.ModuleType({RUNTIME_MODULE!r})",
        "module.__file__ = 'taskweaver_lab/kernel_side/plugin_runtime.py'",
        f"previous = sys.modules.get({RUNTIME_MODULE!r})",
        f"sys.modules[{RUNTIME_MODULE!r}] = module",
        f"exec(compile({runtime_source!r}, module.__file__, 'exec', dont_inherit=True), module.__dict__)",
        "module.BOUND.update(getattr(previous, 'BOUND', {}))",
        "try:",
        "    namespace = get_ipython().user_ns",
        "except NameError:",
        "    namespace = sys.modules['__main__'].__dict__",
        f"module.bootstrap(json.loads({json.dumps(payload, default=str)!r}), {workspace!r}, namespace)",
    ])
    return (f"exec(compile({inner!r}, '<taskweaver_lab plugins>', 'exec', dont_inherit=True), "
            "{'__name__': '_taskweaver_lab_bootstrap'})\n")


def kernel_artifacts_code() -> str:
    """A silent-execute snippet printing (as one JSON line) and clearing the artifacts plugins added."""
    return (f"print(getattr(__import__('sys').modules.get({RUNTIME_MODULE!r}), "
            "'take_artifacts_json', lambda: '[]')())\n")


def parse_artifacts(stdout: str) -> list[dict[str, str]]:
    """Parse the output of ``kernel_artifacts_code``: dicts with name, path, file_name, type, desc, plugin."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, list):
            return value
    return []
