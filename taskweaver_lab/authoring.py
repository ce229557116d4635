"""Function -> plugin: TaskWeaver's plugin YAML and .py written from a plain Python function.

    @taskweaver_lab.plugin
    def word_count(text: str, min_length: int = 1) -> tuple[int, str]:
        '''Count the words of a text ...

        Args:
            text: the text to count in.
            min_length: shorter words are not counted.

        Returns:
            count: how many words.
            description: one sentence saying so.
        '''

The YAML comes from the signature (names, defaults -> ``required``), the type hints (``type``) and the
docstring (summary -> ``description``; Google ``Args:``/``Returns:`` or reST ``:param x:``/``:returns:``).
The .py holds the function (decorators replaced by ``@register_plugin``), the imports of its module and the
module-level helpers it uses: a TaskWeaver plugin pair that loads unchanged (TaskWeaver registers plain
functions too). ``jupyter taskweaver plugin new NAME`` / ``plugin from-function module:func`` are the CLI.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import sys
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .plugins import load_plugin
from .steps import TaskWeaverLabError

ATTRIBUTE = "__taskweaver_plugin__"
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns|Return|Yields|Raises|Examples?|Notes?)\s*:?\s*$")
_REST = re.compile(r"^\s*:(param|parameter|arg|type|returns?|rtype|raises?)\b\s*([A-Za-z_]\w*)?\s*:\s*(.*)$")
_ITEM = re.compile(r"^\s*\*{0,2}([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


@dataclass(frozen=True)
class PluginInfo:
    """What the decorator adds to what the function says about itself."""

    name: str = ""
    description: str = ""
    examples: str = ""
    enabled: bool = True
    required: bool = False
    plugin_only: bool = False
    configurations: dict[str, Any] = field(default_factory=dict)


def plugin(func: Callable[..., Any] | None = None, *, save_to: str | Path | None = None, **options: Any) -> Any:
    """``@taskweaver_lab.plugin`` or ``@taskweaver_lab.plugin(name=..., description=..., examples=..., required=...)``.

    The function is returned unchanged (still callable as is); ``plugin_yaml(f)`` / ``write_plugin(f, folder)``
    / ``jupyter taskweaver plugin from-function module:f`` turn it into a TaskWeaver plugin. ``save_to=folder``
    writes it there at once (handy in a notebook; add the folder to ``TaskWeaverLab.plugin_dirs``)."""
    unknown = set(options) - set(PluginInfo.__dataclass_fields__)
    if unknown:
        raise TypeError(f"taskweaver_lab.plugin got unknown options {sorted(unknown)}; "
                        f"known: {sorted(PluginInfo.__dataclass_fields__)}")

    def mark(target: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isfunction(target):
            raise TypeError("taskweaver_lab.plugin decorates a plain function (def ...)")
        setattr(target, ATTRIBUTE, PluginInfo(**options))
        if save_to is not None:
            write_plugin(target, save_to, force=True)
        return target

    return mark(func) if func is not None else mark


# --- The docstring -------------------------------------------------------------------------

@dataclass
class _Doc:
    summary: str = ""
    params: dict[str, str] = field(default_factory=dict)
    returns: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type, description)


def parse_docstring(text: str) -> _Doc:
    """Summary, parameter notes and named returns from a Google or reST style docstring."""
    doc, section, summary = _Doc(), "", []
    for line in inspect.cleandoc(text or "").splitlines():
        rest, header = _REST.match(line), _SECTION.match(line)
        if rest:
            _rest_line(doc, *rest.groups())
            section = "rest"
        elif header:
            section = header.group(1).lower().rstrip("s")
        elif not section:
            summary.append(line)
        elif section in ("arg", "argument", "parameter", "param", "return") and _ITEM.match(line):
            name, kind, note = _ITEM.match(line).groups()  # type: ignore[union-attr]
            if section == "return":
                doc.returns.append((name, kind or "", note.strip()))
            else:
                doc.params[name] = note.strip()
        elif line.strip() and section in ("arg", "argument", "parameter", "param") and doc.params:
            last = list(doc.params)[-1]
            doc.params[last] = f"{doc.params[last]} {line.strip()}".strip()
    doc.summary = " ".join(" ".join(summary).split())
    return doc


def _rest_line(doc: _Doc, tag: str, name: str | None, note: str) -> None:
    if tag in ("param", "parameter", "arg") and name:
        doc.params[name] = note.strip()
    elif tag.startswith("return"):
        doc.returns.append(("result", "", note.strip()))


# --- Types -----------------------------------------------------------------------------------

def type_text(annotation: Any) -> str:
    """``str``, ``int``, ``DataFrame``, ``list[str]``...: the short form TaskWeaver YAMLs use."""
    if annotation is inspect.Parameter.empty or annotation is None:
        return "Any" if annotation is inspect.Parameter.empty else "None"
    text = annotation if isinstance(annotation, str) else (
        annotation.__name__ if isinstance(annotation, type) and not typing.get_args(annotation) else repr(annotation))
    text = text.replace("typing.", "").replace("NoneType", "None")
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # a hint naming something not importable here: keep its text
        return dict(getattr(func, "__annotations__", {}))


def _returns(func: Callable[..., Any], doc: _Doc) -> list[dict[str, str]]:
    hint = _hints(func).get("return", inspect.Parameter.empty)
    parts = typing.get_args(hint) if typing.get_origin(hint) is tuple else ()
    kinds = [type_text(p) for p in parts if p is not Ellipsis] or [type_text(hint)]
    if kinds == ["None"]:
        return []
    count = max(len(kinds), len(doc.returns)) if parts else 1
    items = []
    for index in range(count):
        name, kind, note = doc.returns[index] if index < len(doc.returns) else (f"result{index or ''}", "", "")
        items.append({"name": name, "type": kinds[index] if index < len(kinds) else kind or "Any",
                      "description": note or f"The {name}."})
    return items


# --- YAML and source -------------------------------------------------------------------------

def plugin_fields(func: Callable[..., Any]) -> dict[str, Any]:
    """TaskWeaver's plugin YAML fields for ``func`` (as a dict, in TaskWeaver's order)."""
    info: PluginInfo = getattr(func, ATTRIBUTE, PluginInfo())
    doc, hints = parse_docstring(func.__doc__ or ""), _hints(func)
    description = info.description or doc.summary
    if not description:
        raise TaskWeaverLabError(f"{func.__name__} has no docstring: its first paragraph becomes the plugin's "
                                 "description (what the Planner reads), so write one or pass description=...")
    parameters = []
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        item = {"name": param.name, "type": type_text(hints.get(param.name, param.annotation)),
                "required": param.default is param.empty,
                "description": doc.params.get(param.name) or f"The {param.name.replace('_', ' ')}."}
        if param.default is not param.empty and isinstance(param.default, (str, int, float, bool, type(None))):
            item["default"] = param.default
        parameters.append(item)
    name = info.name or func.__name__
    returns = _returns(func, doc)
    required_args = ", ".join(p["name"] for p in parameters if p["required"])
    outcome = ", ".join(r["name"] for r in returns)
    examples = info.examples or (f"{outcome} = " if outcome else "") + f"{name}({required_args})"
    return {"name": name, "enabled": info.enabled, "required": info.required, "plugin_only": info.plugin_only,
            "description": description, "examples": examples, "parameters": parameters, "returns": returns,
            "configurations": dict(info.configurations)}


def plugin_yaml(func: Callable[..., Any]) -> str:
    return yaml.safe_dump(plugin_fields(func), sort_keys=False, allow_unicode=True, width=110)


def plugin_source(func: Callable[..., Any], name: str) -> str:
    """The .py: its module's imports, the module-level helpers it uses, the function as ``@register_plugin``.

    A function that is not at the top level of an importable module (a notebook cell, a nested def) brings
    only its own source: it must import what it uses inside its body."""
    source, body = _module_tree(func) or ("", [])
    target = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                   and n.name == func.__name__ and _first_line(n) <= func.__code__.co_firstlineno <= n.end_lineno), None)
    if target is None:
        try:
            own = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError):
            raise TaskWeaverLabError(f"Cannot read the source of {func.__name__} (typed at an interactive prompt?): "
                                     "define it in a .py file or a notebook cell.") from None
        definition, helpers = _segment(own, ast.parse(own).body[0], skip_decorators=True), []
    else:
        definition = _segment(source, target, skip_decorators=True)
        helpers = [_segment(source, n) for n in _helpers(body, target)]
    pieces = [_segment(source, n) for n in body if isinstance(n, (ast.Import, ast.ImportFrom)) and not _ours(n)]
    pieces.append("from taskweaver.plugin import register_plugin")
    if name != func.__name__:
        definition = definition.replace(f"def {func.__name__}(", f"def {name}(", 1)
    doc = f'"""{name}: a TaskWeaver plugin written by `jupyter taskweaver plugin` from {func.__module__}.{func.__name__}."""'
    return "\n".join([doc] + pieces) + "\n\n\n" + "".join(h + "\n\n\n" for h in helpers) + \
        "@register_plugin\n" + definition + "\n"


def _first_line(node: ast.AST) -> int:
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])  # type: ignore[attr-defined]


def _module_tree(func: Callable[..., Any]) -> tuple[str, list[ast.stmt]] | None:
    module = sys.modules.get(func.__module__)
    try:
        source = inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):  # a notebook or the REPL: only the function itself is known
        return None
    return (source, list(ast.parse(source).body)) if source else None


def _ours(node: ast.Import | ast.ImportFrom) -> bool:
    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
    return any(n.split(".")[0] in ("taskweaver_lab", "__future__") for n in names)


def _segment(source: str, node: ast.AST, skip_decorators: bool = False) -> str:
    lines = source.splitlines()
    start = node.lineno if skip_decorators else _first_line(node)  # type: ignore[attr-defined]
    return textwrap.dedent("\n".join(lines[start - 1:node.end_lineno]))  # type: ignore[attr-defined]


def _helpers(body: list[ast.stmt], target: ast.AST) -> list[ast.stmt]:
    """Module-level functions, classes and constants the function uses (transitively), in module order."""
    defined: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined[node.name] = node
        elif isinstance(node, ast.Assign):
            defined.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
    needed: set[int] = set()
    queue = [target]
    while queue:
        for used in (n.id for n in ast.walk(queue.pop()) if isinstance(n, ast.Name)):
            node = defined.get(used)
            if node is not None and node is not target and id(node) not in needed:
                needed.add(id(node))
                queue.append(node)
    return [n for n in body if id(n) in needed]


def write_plugin(func: Callable[..., Any], folder: str | Path, force: bool = False,
                 source: str | None = None) -> tuple[Path, Path]:
    """Write ``<name>.yaml`` and ``<name>.py`` (``source``, default: from the function) into ``folder``, and check
    that our loader accepts them."""
    fields = plugin_fields(func)
    target = Path(folder)
    yaml_path, py_path = target / f"{fields['name']}.yaml", target / f"{fields['name']}.py"
    existing = [str(p) for p in (yaml_path, py_path) if p.exists()]
    if existing and not force:
        raise TaskWeaverLabError(f"{' and '.join(existing)} already exist; pass --force to overwrite them.")
    code = source or plugin_source(func, fields["name"])  # before writing anything: never half a pair
    target.mkdir(parents=True, exist_ok=True)
    yaml_path.write_text(yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")
    py_path.write_text(code, encoding="utf-8")
    spec, problems = load_plugin(yaml_path)
    if spec is None:
        raise TaskWeaverLabError(f"The plugin written to {yaml_path} does not load: {'; '.join(problems)}")
    return yaml_path, py_path


# --- The CLI ---------------------------------------------------------------------------------

_TEMPLATE = '''"""{name}: a TaskWeaver plugin. Edit the function, then rewrite the YAML from it with
jupyter taskweaver plugin from-function {name}:{name} --force (run in this folder)."""
from taskweaver.plugin import register_plugin


@register_plugin
def {name}(text: str, limit: int = 10) -> tuple[str, str]:
    """Say in one or two sentences what {name} does: the Planner reads this to decide when to call it.

    Args:
        text: what the first argument means.
        limit: what the second argument means.

    Returns:
        result: what comes back first.
        description: one sentence describing the result (the Planner reads it).
    """
    result = text[:limit]
    return result, f"{name} kept the first {{len(result)}} characters."
'''


def new_plugin(name: str, folder: str | Path, force: bool = False) -> tuple[Path, Path]:
    """A starting point: a documented, typed function and the YAML written from it."""
    if not re.match(r"^[A-Za-z_]\w*$", name):
        raise TaskWeaverLabError(f"{name!r} is not a Python identifier; a plugin name is called like a function.")
    source = _TEMPLATE.format(name=name)
    namespace: dict[str, Any] = {}
    exec(compile(source.replace("from taskweaver.plugin import register_plugin", "register_plugin = lambda f: f"),
                 f"<{name}>", "exec"), namespace)
    return write_plugin(namespace[name], folder, force, source=source)


def function_at(spec: str) -> Callable[..., Any]:
    """``module:function`` (the module importable from the current folder or sys.path)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TaskWeaverLabError(f"Name the function as module:function (e.g. mytools:word_count), not {spec!r}.")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module failed to import: say which and why, in one line
        raise TaskWeaverLabError(f"Cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.pop(0)
    func = getattr(module, attr, None)
    if not inspect.isfunction(func):
        raise TaskWeaverLabError(f"{module_name} has no function {attr!r}.")
    return func


def add_cli(sub: Any) -> None:
    """``jupyter taskweaver plugin new NAME`` / ``plugin from-function module:func`` (into ``--dir``)."""
    parser = sub.add_parser("plugin", help="write TaskWeaver plugins (YAML + .py) from Python functions")
    verbs = parser.add_subparsers(dest="plugin_command", required=True)
    new = verbs.add_parser("new", help="start a plugin: a documented function and its YAML")
    new.add_argument("name")
    convert = verbs.add_parser("from-function", help="write the YAML (and .py) of module:function from its "
                                                     "signature, type hints and docstring")
    convert.add_argument("function", metavar="module:function")
    for verb in (new, convert):
        verb.add_argument("--dir", default="plugins", help="the plugin folder (default: ./plugins)")
        verb.add_argument("--force", action="store_true", help="overwrite existing files")


def run_cli(args: argparse.Namespace) -> int:
    if args.plugin_command == "new":
        yaml_path, py_path = new_plugin(args.name, args.dir, args.force)
    else:
        yaml_path, py_path = write_plugin(function_at(args.function), args.dir, args.force)
    print(f"wrote {yaml_path} and {py_path}")
    return 0
