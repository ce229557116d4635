"""``jupyter taskweaver``: the headless entry point (ARCHITECTURE A3).

    jupyter taskweaver run NOTEBOOK -m "message" [-m "next message" ...] [--json] [--TaskWeaverLab.<name>=...]
    jupyter taskweaver save-example NOTEBOOK OUT.yaml [--role planner|code_generator] [--round N ...]
    jupyter taskweaver config            # every setting with its help, as a commented config file
    jupyter taskweaver install-sandbox-kernelspec [--user | --sys-prefix | --prefix DIR]
    jupyter taskweaver plugin new NAME | plugin from-function MODULE:FUNCTION [--dir plugins] [--force]
    jupyter taskweaver local-model start|stop|status [--model PATH] [--port N]   # an offline model (local_model.py)

Exit 0 on success; non-zero with a one-line reason on failure.
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from traitlets import Container

from . import authoring, local_model
from .config import TaskWeaverLab
from .steps import Step, TaskWeaverLabError

PREFIX = "--TaskWeaverLab."


def split_config_args(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Separate ``--TaskWeaverLab.name=value`` options (typed by their traitlet) from the rest.

    A list setting takes one item per option, repeated to add more (``--TaskWeaverLab.plugin_dirs=a
    --TaskWeaverLab.plugin_dirs=b``), or a Python/JSON list literal (``=["a", "b"]``); an empty value
    (``--TaskWeaverLab.plugin_dirs=``) makes the list empty. Other settings: the last one given wins."""
    rest: list[str] = []
    raw_values: dict[str, list[str]] = {}
    traits = TaskWeaverLab.class_traits(config=True)
    for arg in argv:
        if not arg.startswith(PREFIX):
            rest.append(arg)
            continue
        name, sep, raw = arg[len(PREFIX):].partition("=")
        if name not in traits or not sep:
            raise TaskWeaverLabError(f"Unknown or malformed option {arg!r}; use {PREFIX}<name>=<value> with one of: "
                                     + ", ".join(sorted(traits)))
        raw_values.setdefault(name, []).append(raw)
    return rest, {name: _typed(traits[name], name, values) for name, values in raw_values.items()}


def _typed(trait: Any, name: str, values: list[str]) -> Any:
    """The value of one setting from its command-line strings, checked by its traitlet."""
    try:
        if isinstance(trait, Container):
            return _container_value(trait, values)
        return trait.from_string(values[-1])
    except TaskWeaverLabError:
        raise
    except Exception as exc:
        raise TaskWeaverLabError(f"Bad value for {PREFIX}{name}: {exc}") from exc


def _container_value(trait: Container, values: list[str]) -> Any:
    items = [v for v in values if v != ""]
    if len(items) == 1 and items[0][:1] in "[(" and items[0][-1:] in "])":
        try:
            parsed = ast.literal_eval(items[0])
        except (ValueError, SyntaxError) as exc:
            raise TaskWeaverLabError(f"Bad value for {PREFIX}{trait.name}: {items[0]!r} is not a list literal "
                                     f"({exc}); give one item per option instead.") from None
        items = [str(item) for item in parsed] if isinstance(parsed, (list, tuple)) else items
    value = trait.from_string_list(items) if items else trait.klass()
    trait.validate(TaskWeaverLab(), value)  # e.g. the item type of a List(Unicode())
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jupyter taskweaver", description="taskweaver_lab headless agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run user rounds against a notebook (created or extended as the record)")
    run.add_argument("notebook")
    run.add_argument("-m", "--message", action="append", required=True, help="one user round (repeatable)")
    run.add_argument("--json", action="store_true", help="print one JSON event per line")
    run.add_argument("--new", action="store_true", help="start a new session instead of resuming the notebook's")
    run.add_argument("--config", metavar="FILE", help="a jupyter_taskweaver_config.py/.json to load (one in the working "
                                                      "folder is never loaded by itself: generated code can write there)")
    save = sub.add_parser("save-example", help="save a finished round of a notebook's record as an example YAML")
    save.add_argument("notebook")
    save.add_argument("output")
    save.add_argument("--role", choices=["planner", "code_generator"], default="planner")
    save.add_argument("--round", type=int, action="append", help="round number(s) to save (default: the last)")
    sub.add_parser("config", help="print every TaskWeaverLab setting with its help and default, as a config file "
                                  "(jupyter taskweaver config > ~/.jupyter/jupyter_taskweaver_config.py)")
    spec = sub.add_parser("install-sandbox-kernelspec",
                          help="install the 'taskweaver-sandbox' kernelspec (Landlock + seccomp; its kernels need the "
                               "taskweaver_lab server extension, which starts them over IPC)")
    where = spec.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user only")
    where.add_argument("--sys-prefix", action="store_true", help="into sys.prefix (this virtualenv/conda env)")
    where.add_argument("--prefix", help="into PREFIX/share/jupyter/kernels")
    authoring.add_cli(sub)  # plugin new NAME | plugin from-function module:func
    local_model.add_cli(sub)  # local-model start|stop|status [--model PATH] [--port N]
    return parser


def _print_event(step: Step) -> None:
    if step.kind != "delta":  # deltas are for live UIs; the full texts follow in the steps
        print(json.dumps(step.to_json(), default=str), flush=True)


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from .config import load_config_files
    from .session import TaskWeaverApp

    app = TaskWeaverApp(config=overrides, traitlets_config=load_config_files(config_file=args.config))
    for problem in app.load_errors:
        print(f"warning: {problem}", file=sys.stderr)
    progress = lambda step: step.level == "info" and print(f"taskweaver: {step.text}", file=sys.stderr, flush=True)  # noqa: E731
    with app.create_session(notebook=args.notebook, new=args.new, on_event=progress) as session:
        for notice in session.setup_notices:  # e.g. a plugin that raised on import in the kernel (out of every prompt)
            print(f"warning: {notice.text}", file=sys.stderr)
        for message in args.message:
            answer = session.chat(message, on_event=_print_event if args.json else None)
            if not args.json:
                print(answer.text, flush=True)
            if answer.stop == "TaskFailure":
                print(f"taskweaver: round failed: {answer.text.splitlines()[0]}", file=sys.stderr)
                return 1
        if args.json:
            print(json.dumps({"kind": "usage", **session.usage.to_json()}), flush=True)
    return 0


def save_example(args: argparse.Namespace) -> int:
    from .notebook import read_notebook, steps_from_notebook
    from .session import rounds_as_example

    path = Path(args.notebook)
    if not path.is_file():
        raise TaskWeaverLabError(f"No notebook at {path}.")
    history = steps_from_notebook(read_notebook(path))[1]
    Path(args.output).write_text(rounds_as_example(history, args.role, args.round))
    print(f"saved to {args.output}")
    return 0


def install_sandbox_kernelspec(args: argparse.Namespace) -> int:
    from .sandbox import check_support
    from .server.sandbox_kernelspec import DISPLAY_NAME, install_kernelspec

    check_support()  # a spec whose kernels cannot start would only fail later, in the notebook
    prefix = sys.prefix if args.sys_prefix else args.prefix
    print(f"installed '{DISPLAY_NAME}' in {install_kernelspec(user=args.user, prefix=prefix)}")
    return 0


def print_config() -> int:
    """Every knob, commented out at its default: the config file an admin starts from."""
    print(TaskWeaverLab.class_config_section())
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        rest, overrides = split_config_args(sys.argv[1:] if argv is None else argv)
        args = _parser().parse_args(rest)
        commands = {"run": lambda: run(args, overrides), "save-example": lambda: save_example(args),
                    "config": print_config, "install-sandbox-kernelspec": lambda: install_sandbox_kernelspec(args),
                    "plugin": lambda: authoring.run_cli(args),
                    "local-model": lambda: local_model.run_cli(args)}
        code = commands[args.command]()
    except TaskWeaverLabError as exc:
        print(f"taskweaver: {exc}", file=sys.stderr)
        code = 2
    except BrokenPipeError:  # `jupyter taskweaver config | head`: the reader had enough
        code = 0
    except KeyboardInterrupt:
        print("taskweaver: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
