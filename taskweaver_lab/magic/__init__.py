"""``%%taskweaver`` / ``%taskweaver``: ask the agent from a notebook cell.

    %load_ext taskweaver_lab
    %%taskweaver [--auto|--approve] [--new] [--plugins-only] [--local] [--no-insert]
                 [--cassette PATH [--record|--replay]] [--TaskWeaverLab.<name>=<value> ...]
    Load sales.csv and plot monthly totals

Two modes, chosen per cell:

* **Joined** (``TASKWEAVER_LAB_SERVER_URL`` is set in the kernel, i.e. the kernel was started by a
  Jupyter server running the taskweaver_lab extension): the turn runs in the SERVER, in the notebook's
  session shared with the chat sidebar. The magic posts the request signed with this kernel's own
  ZMQ key (the kernel never has the server token), then long-polls the turn's events and renders
  plan, progress and answer live. The server runs generated cells on a kernel subshell, so this cell
  blocking the main shell does not deadlock, and records them below this cell (metadata A5).
  Ctrl-C / Stop posts ``stop``. Unreachable or refusing server: one-line notice, then in-process.

* **In-process** (nbconvert, papermill, plain IPython/ipykernel, or ``--local``): the same agent core
  runs inside this kernel with the kernel itself as executor (``inprocess.InProcessExecutor``).
  LLM config: jupyter config files (``jupyter_taskweaver_config.py``/``jupyter_server_config.py`` in
  the Jupyter config path and the cwd), OPENAI_BASE_URL / OPENAI_API_KEY, then the magic line.
  **What is recorded where:** the magic cell's OUTPUT is the record; no file is written. Every record
  cell (the request, each plan, each generated code cell, the answer) is displayed there, and each
  such display_data carries the full nbformat cell with ``metadata.taskweaver_lab`` in its output
  metadata under ``taskweaver_lab.cell`` (code cells without their outputs: those are displayed right
  after the code). ``nbconvert --execute`` saves these outputs, so the executed notebook is the
  record. The history lives in this kernel: later ``%%taskweaver`` cells continue the session until
  ``--new`` or a kernel restart. Where the frontend supports it, the round's successful code is also
  offered as one new cell below (``set_next_input`` payload; ``--no-insert`` turns that off).
  ``--cassette PATH`` replays when the file exists and records otherwise (or set ``llm_cassette`` /
  ``llm_cassette_mode`` in a config file): re-runs are reproducible without an LLM endpoint.

Errors (no endpoint, endpoint down, verification exhausted, interrupted) end the cell with one
``UsageError`` line, which IPython prints without a traceback and which stops Run All / nbconvert.
"""
from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..steps import TaskWeaverLabError
from .joined import ServerLink, run_joined
from .local import run_local
from .options import Options, parse_options
from .view import TurnView

__all__ = ["TaskWeaverMagics", "load_ipython_extension", "parse_options", "run_magic"]


# --- the magic -------------------------------------------------------------------------------------
def run_magic(shell: Any, options: Options) -> None:
    if not options.local:
        link, reason = ServerLink.from_kernel(shell)
        if link is not None and options.llm_options:
            print("taskweaver: LLM options on the magic line apply in this kernel only; running here "
                  "(drop them to share the chat panel's session).")
        elif link is not None and run_joined(link, shell, options, TurnView(live_plan=True)):
            return
        elif reason:
            print(f"taskweaver: {reason}; running in this kernel instead.")
    run_local(shell, options, TurnView(live_plan=False))


@magics_class
class TaskWeaverMagics(Magics):
    @line_cell_magic
    def taskweaver(self, line: str, cell: str | None = None) -> None:
        """Ask TaskWeaver (``%%taskweaver`` + request, or ``%taskweaver request``). See ``taskweaver_lab.magic``."""
        try:
            run_magic(self.shell, parse_options(line, cell))
        except TaskWeaverLabError as exc:
            raise UsageError(f"taskweaver: {exc}") from None
        except KeyboardInterrupt:
            raise UsageError("taskweaver: interrupted. Nothing after the last finished step ran; the kernel "
                             "is ready, ask again to continue.") from None


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(TaskWeaverMagics)
