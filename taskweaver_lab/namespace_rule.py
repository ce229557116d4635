"""The verifier's namespace rule: agent code must not overwrite, delete or change in place the variables the
user created in the kernel (their data). A violation is not final: the user may approve it (approval mode).

Pure, like the rest of the verifier (``verifier.py`` calls ``namespace_violations``).
"""
from __future__ import annotations

import ast
from typing import Iterator

from .steps import Violation


def namespace_violations(tree: ast.Module, user_names: frozenset[str]) -> list[Violation]:
    if not user_names:
        return []
    return [
        Violation("namespace", line, f"`{name}` is a variable the user created; {verb} it would "
                                     f"{'delete' if verb == 'deleting' else 'overwrite'} the user's data. "
                                     f"Choose a new variable name (e.g. `{name}_2`).")
        for name, line, verb in _module_bindings(tree)
        if name in user_names
    ] + [
        Violation("namespace", line, f"`{name}` is a variable the user created; changing it in place would modify "
                                     f"the user's data. Work on a copy (e.g. `{name}_2 = {name}.copy()`).")
        for name, line in _in_place_changes(tree)
        if name in user_names
    ]


def _root_name(node: ast.AST) -> str | None:
    """``df`` for ``df``, ``df['a']``, ``df.loc[0, 'a']``, ``df.attrs['x']``."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _in_place_changes(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """(name, line) for item/attribute assignments and deletions on a name, and ``name.method(inplace=True)``."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            name = _root_name(node)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and any(k.arg == "inplace" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                      for k in node.keywords)):
            name = _root_name(node.func.value)
        else:
            continue
        if name is not None:
            yield name, node.lineno


def _module_bindings(tree: ast.Module) -> Iterator[tuple[str, int, str]]:
    """(name, line, 'rebinding'|'deleting') for every module-level binding, incl. ``global`` in functions."""
    for node in _module_scope_nodes(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            yield node.id, node.lineno, "deleting" if isinstance(node.ctx, ast.Del) else "rebinding"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    yield (alias.asname or alias.name.split(".")[0]), node.lineno, "rebinding"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, node.lineno, "rebinding"
        elif isinstance(node, ast.ExceptHandler) and node.name:
            yield node.name, node.lineno, "rebinding"
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            yield node.name, node.lineno, "rebinding"
        elif isinstance(node, ast.Global):
            yield from ((name, node.lineno, "rebinding") for name in node.names)


def _module_scope_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Nodes whose bindings land in the module namespace (function bodies only via ``global``)."""
    stack: list[ast.AST] = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            # decorators/defaults evaluate at module scope; bodies do not (except `global` and walrus-free)
            stack.extend(getattr(node, "decorator_list", []))
            stack.extend(n for n in ast.walk(node) if isinstance(n, ast.Global))
            continue
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            stack.extend(n.target for n in ast.walk(node) if isinstance(n, ast.NamedExpr))
            continue
        stack.extend(ast.iter_child_nodes(node))
