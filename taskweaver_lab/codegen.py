"""The Code Generator: reply parsing (ARCHITECTURE A1, both forms) and one drafting call."""
from __future__ import annotations

import ast
import re
from typing import Any, Callable, Sequence

from .llm import LLM, CallContext
from .prompts import code_messages
from .replies import ReplyParseError, ask_within_context, extract_json_object, strip_think
from .steps import Draft, Plan

_CODE_BLOCK = re.compile(r"```[ \t]*(python|py|ipython|python3)?[ \t]*\n(.*?)(```|\Z)", re.S | re.I)


CODE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"thought": {"type": "string"}, "reply_type": {"type": "string", "enum": ["python"]},
                   "reply_content": {"type": "string", "minLength": 1}},
    "required": ["thought", "reply_type", "reply_content"],
}


def _looks_like_json_reply(text: str) -> bool:
    return bool(re.match(r"^(```(json)?\s*)?\{", text.strip(), re.I)) and "reply_content" in text


def _from_json(text: str) -> tuple[str, str, str]:
    data = extract_json_object(text)
    reply_type = str(data.get("reply_type") or "python").lower()
    content = data.get("reply_content")
    if not isinstance(content, str):
        raise ReplyParseError('"reply_content" must be a string')
    return str(data.get("thought") or ""), content, "text" if reply_type == "text" else "python"


def _from_markdown(text: str) -> tuple[str, str, str]:
    blocks = list(_CODE_BLOCK.finditer(text))
    python_blocks = [m for m in blocks if m.group(1)] or blocks
    if not python_blocks:
        return text.strip(), "", "text"
    if python_blocks[-1].group(3) != "```":
        raise ReplyParseError("the code block is not closed (was the reply cut off?)")
    # Small models sometimes split one program over several blocks: run them in order.
    code = "\n\n".join(m.group(2).strip("\n") for m in python_blocks)
    thought = _CODE_BLOCK.sub("", text).strip()
    return thought, code, "python"


# Conventional aliases small models use without importing them (a fresh kernel then fails with NameError: pd).
CONVENTIONAL_IMPORTS = {"pd": "import pandas as pd", "np": "import numpy as np", "plt": "import matplotlib.pyplot as plt",
                        "sns": "import seaborn as sns"}


def with_imports(code: str) -> str:
    """``code`` with the imports of conventional aliases it uses but never binds (the verifier checks them too)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # the verifier reports it
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
              for a in n.names}
    missing = [CONVENTIONAL_IMPORTS[name] for name in CONVENTIONAL_IMPORTS if name in used - bound]
    return "\n".join(missing + [code]) if missing else code


def parse_draft(text: str, attempt: int = 1, step: int = 1, round_number: int = 0) -> Draft:
    """JSON ``{"thought", "reply_type", "reply_content"}`` or Markdown prose + a python block."""
    body = strip_think(text)
    thought, content, reply_type = _from_json(body) if _looks_like_json_reply(body) else _from_markdown(body)
    if reply_type == "python" and not content.strip():
        raise ReplyParseError("the python reply has no code")
    if reply_type == "text":
        return Draft(thought=content or thought, code="", reply_type="text", attempt=attempt, step=step, round=round_number)
    return Draft(thought=thought, code=with_imports(content.strip("\n")), attempt=attempt, step=step, round=round_number)


class CodeGenerator:
    def __init__(self, llm: LLM, plugins_text: Callable[[str], str], examples: Callable[[str], Sequence[Any]],
                 look: Callable[[str], str] = lambda query: "") -> None:
        # Plugins, examples and the data preview are chosen per request (only the relevant ones reach the prompt).
        self.llm, self.plugins_text, self.examples, self.look = llm, plugins_text, examples, look

    def write(self, task: Plan, request: str, variables: str, feedback: Sequence[tuple[Draft, str]],
              attempt: int, ctx: CallContext) -> Draft:
        # Chosen by the request alone: the same functions the Planner was shown, and the same for every step of
        # the round (a stable prompt prefix). The data preview also looks at the task (it may name a file).
        plugins, examples, look = self.plugins_text(request), self.examples(request), self.look(f"{request}\n{task.message}")
        # After a reply without code, constrain the next one to TaskWeaver's JSON form with python content
        # (where the endpoint supports json_schema): small models otherwise repeat their prose.
        forced = bool(feedback) and feedback[-1][0].reply_type == "text"
        return ask_within_context(
            self.llm, "code_generator",
            lambda short: code_messages(task, request, variables, plugins, feedback, examples, look, short),
            lambda text: parse_draft(text, attempt, task.current_step, task.round),
            "one short sentence and one complete ```python block", ctx, CODE_SCHEMA if forced else None)
