"""``POST taskweaver_lab/examples``: the sidebar's "Save as example" under an answer (issue 15 item 3).

The round is named by its user message (the sidebar knows it; round numbers can differ from its list
of turns). It is read from the notebook's live session, else from its record, and written as TaskWeaver
example YAML (``rounds_as_example``) for each role the round has something to show, next to the notebook
in ``taskweaver_examples/``. Nothing is loaded from there automatically: the user adds that folder to
``example_dirs`` if they want the examples used (examples go into prompts, so that stays their choice).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado import web
from jupyter_server.auth.decorator import authorized

from ..examples import example_to_yaml
from ..notebook import steps_from_notebook
from ..prompts import split_rounds
from ..steps import Step, UserMessage
from .handlers import BaseHandler, refusals, text_field
from .turns import TurnError, TurnManager

EXAMPLES_FOLDER = "taskweaver_examples"
ROLES = ("planner", "code_generator")


async def round_steps(turns: TurnManager, path: str, message: str) -> list[Step]:
    """The steps of the last round of ``path`` whose user message is ``message``."""
    entry = turns.sessions.get(path)
    history = list(entry.session.history) if entry is not None else steps_from_notebook(await turns._notebook(path))[1]
    wanted = message.strip()
    for steps in reversed(split_rounds(history)):
        if any(isinstance(s, UserMessage) and s.text.strip() == wanted for s in steps):
            return steps
    raise TurnError(404, "That round is not in this notebook's record (was its session replaced or its cells "
                         "deleted?): save another round, or use `jupyter taskweaver save-example`.")


def write_examples(os_path: str, api_path: str, steps: list[Step], stem: str) -> dict[str, Any]:
    """One YAML per role with something to show; returns their API paths."""
    folder = Path(os_path).parent / EXAMPLES_FOLDER
    api_folder = "/".join([p for p in api_path.strip("/").split("/")[:-1]] + [EXAMPLES_FOLDER])
    saved: list[str] = []
    for role in ROLES:
        try:
            text = example_to_yaml(role, [steps])  # type: ignore[arg-type]
        except ValueError:
            continue  # e.g. a round without code has no code_generator example
        folder.mkdir(exist_ok=True)
        n = 1
        while (folder / f"{stem}-{role}-{n}.yaml").exists():
            n += 1
        (folder / f"{stem}-{role}-{n}.yaml").write_text(text, encoding="utf-8")
        saved.append(f"{api_folder}/{stem}-{role}-{n}.yaml")
    if not saved:
        raise TurnError(409, "This round has nothing an example can show yet (no plan or code): wait for its answer.")
    return {"saved": saved, "folder": api_folder}


class SaveExampleHandler(BaseHandler):
    auth_resource = "contents"  # it writes files next to the notebook

    @web.authenticated
    @authorized
    @refusals
    async def post(self) -> None:
        turns = self.turns
        data = self.body()
        path, message = text_field(data, "path"), text_field(data, "message")
        os_path = turns.os_path(path)
        steps = await round_steps(turns, path, message)
        self.finish(write_examples(os_path, path, steps, Path(os_path).stem))
