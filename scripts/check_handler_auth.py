#!/usr/bin/env python
"""Fail (exit 1) when a taskweaver_lab handler method can be reached without authentication.

Every HTTP verb a routed handler implements must be, reading its decorators in the source:
- a browser endpoint: ``@web.authenticated`` (or ``@tornado.web.authenticated``) AND ``@authorized``;
- a websocket: ``@ws_authenticated`` (jupyter_server's pattern) and a class with ``pre_get`` authorizing;
- a kernel endpoint: ``@allow_unauthenticated`` only together with ``@kernel_signed`` (the kernel's HMAC).
A verb inherited from a library class fails too (e.g. a bare WebSocketHandler.get), except tornado's
405 default and jupyter_server's CORS preflight (``SAFE_INHERITED``). Exit 0 prints each handler, verb and how it is authenticated.
"""
from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from pathlib import Path

from tornado import web

VERBS = ("get", "post", "put", "patch", "delete", "head", "options")
# Library methods that are safe unauthenticated, by design: the CORS preflight answers headers only.
SAFE_INHERITED = {("jupyter_server.base.handlers.APIHandler", "options"): "CORS preflight (jupyter_server; headers only, no data)"}


def decorator_names(func: object) -> list[str]:
    """Dotted names of a function's decorators, read from its source."""
    source = textwrap.dedent(inspect.getsource(inspect.unwrap(func)))  # type: ignore[arg-type]
    node = ast.parse(source).body[0]
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    names = []
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        names.append(ast.unparse(target))
    return names


def classify(names: list[str]) -> str | None:
    """How a method with these decorators is authenticated, or None."""
    short = {name.rsplit(".", 1)[-1] for name in names}
    if "allow_unauthenticated" in short:
        return "kernel signature (HMAC with the kernel's key)" if "kernel_signed" in short else None
    if "ws_authenticated" in short:
        return "websocket: ws_authenticated + authorizer in pre_get"
    if {"authenticated", "authorized"} <= short:
        return "web.authenticated + authorized"
    return None


def check(handler: type, verb: str) -> tuple[bool, str]:
    owner = next(k for k in handler.__mro__ if verb in vars(k))
    if owner is web.RequestHandler:
        return True, "not implemented (405)"
    safe = SAFE_INHERITED.get((f"{owner.__module__}.{owner.__name__}", verb))
    if safe:
        return True, safe
    if not owner.__module__.startswith("taskweaver_lab"):
        return False, f"inherited from {owner.__module__}.{owner.__name__} without our authentication"
    how = classify(decorator_names(vars(owner)[verb]))
    if how and how.startswith("websocket") and "pre_get" not in vars(owner):
        return False, "websocket without an authorizing pre_get"
    return (how is not None), how or "NO AUTHENTICATION DECORATORS"


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not
    from taskweaver_lab.server.handlers import routes

    failures = 0
    for pattern, handler in routes():
        for verb in VERBS:
            ok, how = check(handler, verb)
            if how == "not implemented (405)":
                continue
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {verb.upper():7} {pattern:55} {handler.__name__}: {how}")
    if failures:
        print(f"{failures} handler method(s) lack authentication", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
