"""The ``%%taskweaver`` line: options, flags and ``--TaskWeaverLab.*`` settings, and the request text."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..steps import TaskWeaverLabError

USAGE = ("Usage: %%taskweaver [--auto|--approve] [--new] [--plugins-only] [--local] [--no-insert] "
         "[--cassette PATH [--record|--replay]] [--TaskWeaverLab.<name>=<value>], the request in the cell body "
         "(or %taskweaver [options] <request>).")
FLAGS = ("--auto", "--approve", "--new", "--plugins-only", "--local", "--no-insert", "--record", "--replay")
_OPTION = re.compile(r"""\s*(--[\w.-]+(?:=(?:"[^"]*"|'[^']*'|\S*))?)(?=\s|$)""")


# --- options ---------------------------------------------------------------------------------------
@dataclass
class Options:
    request: str
    approval: str | None = None                        # "auto" | "approve" | None: config decides
    new: bool = False
    plugins_only: bool = False
    local: bool = False
    insert: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)   # TaskWeaverLab settings from the line

    @property
    def llm_options(self) -> bool:
        """Settings only an in-process run can honour (the server has its own config)."""
        return bool(self.overrides.keys() - {"plugin_only"})


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value


def _take_options(line: str) -> tuple[list[str], str]:
    """Leading ``--options`` (``--cassette`` takes the next word); the rest of the line is request text."""
    tokens: list[str] = []
    rest = line
    while (match := _OPTION.match(rest)) is not None:
        tokens.append(match.group(1))
        rest = rest[match.end():]
        if match.group(1) == "--cassette":
            value = re.match(r"""\s*("[^"]*"|'[^']*'|\S+)""", rest)
            if value is None:
                raise TaskWeaverLabError("--cassette needs a file path.")
            tokens[-1] = "--cassette=" + value.group(1)
            rest = rest[value.end():]
    return tokens, rest.strip()


def parse_options(line: str, cell: str | None) -> Options:
    from ..cli import split_config_args

    tokens, text = _take_options(line)
    flags = [t for t in tokens if t in FLAGS]
    other = [t for t in tokens if t not in FLAGS]
    cassette = [t for t in other if t.startswith("--cassette=")]
    unknown = [t for t in other if t not in cassette and not t.startswith("--TaskWeaverLab.")]
    if unknown:
        raise TaskWeaverLabError(f"Unknown option {unknown[0]}. {USAGE}")
    _, overrides = split_config_args([t for t in other if t.startswith("--TaskWeaverLab.")])
    if cassette:
        path = _unquote(cassette[-1].split("=", 1)[1])
        overrides["llm_cassette"] = path
        overrides["llm_cassette_mode"] = "replay" if Path(path).is_file() else "record"
    if "--record" in flags or "--replay" in flags:
        overrides["llm_cassette_mode"] = "record" if "--record" in flags else "replay"
    if "--plugins-only" in flags:
        overrides["plugin_only"] = True
    request = "\n".join(part for part in (text, (cell or "").strip()) if part)
    if not request:
        raise TaskWeaverLabError(f"The request is empty. {USAGE}")
    approval = "approve" if "--approve" in flags else "auto" if "--auto" in flags else None
    return Options(request, approval, "--new" in flags, "--plugins-only" in flags, "--local" in flags,
                   "--no-insert" not in flags, overrides)
