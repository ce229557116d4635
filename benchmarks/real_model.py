"""Opt-in real-model benchmark on InfiAgent-DABench dev questions: the product against a one-call baseline.

Never run in CI: it needs a live OpenAI-compatible endpoint and takes minutes per question on a small machine.

    python benchmarks/real_model.py [--data DIR] [--easy 40] [--medium 20] [--limit N] [--ids 5,6]
                                    [--base-url URL] [--model NAME] [--timeout 300] [--systems product,baseline]
                                    [--verbose] [--json FILE] [--keep] [--set NAME=VALUE ...]

Data: InfiAgent-DABench dev split (CC BY-NC 4.0, Hu et al., ICML 2024), read at run time from
``../shared/data/dabench/`` beside the repository (or ``--data``). Nothing from it is copied into the repository:
each question's CSV is copied into a fresh temporary folder outside it, and ``--json`` refuses paths inside it.

Sample (fixed, deterministic): questions whose labels are usable (no empty label, not the "[" artefact), sorted by
id; the first ``--easy`` of level "easy" then the first ``--medium`` of level "medium". ``--ids`` replaces the sample;
``--limit`` keeps its first N questions.

Systems, on the same endpoint and model in one run:
- product: a fresh notebook in a temp folder holding the CSV; ``TaskWeaverApp(config=...).create_session(notebook)``
  then ``session.chat(prompt)``, in a worker process (a watchdog calls ``session.stop()`` at ``--timeout``; the
  worker is killed if it has not ended 30 s later). Seconds: create_session + chat (not the worker's start-up;
  a killed worker counts until the kill).
- baseline: one chat request for a complete Python program, run in a subprocess; one retry with the traceback if it
  fails; the program's stdout is the answer. Seconds: first request to the last program's end.
All product questions run first, then all baseline ones: llama-server keeps one prompt cache, and alternating
systems would evict each one's cached prefix on every question.

Prompt (both systems): the DABench question, its constraints and its format, concatenated as DABench gives them,
plus one line naming the CSV file in the working folder.

Scoring (the official closed-form rule, written here from its description): every label sub-question needs an
``@name[value]`` in the answer (the last one of that name counts); a value is right when it equals the label after
stripping, case-insensitively, or both parse as floats within 1e-6. A question is right when all its parts are.
Failure kinds: timeout, exec error, format (a required @name[...] missing), ungrounded (a wrong answer holding a
number no execution printed), wrong value, llm error (baseline's endpoint failed). "Ungrounded" is also counted
for right answers: every number in the product's @name[value] pairs must appear, allowing rounding to the
answer's decimals and ignoring sign, in some output of the round's executed code (its streams, results, displays
and the execution summaries; never tracebacks). The check is conservative: it only flags figures nothing printed.
The baseline's answer is its program's output, so it is grounded by construction.

Goals (exit 1 when one is missed or not measured; exit 2 on a setup problem): product accuracy on easy questions
>= 75 %, >= 20 points above the baseline on the same questions, 0 ungrounded product answers, <= 60 s per easy
question on average (product).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dabench"
DEFAULT_BASE_URL = "http://127.0.0.1:8013/v1"
KILL_GRACE_S = 30.0          # after the watchdog's stop(), how long the worker may take to wrap up
GOAL_ACCURACY, GOAL_POINTS, GOAL_SECONDS = 75.0, 20.0, 60.0
ANSWER_RE = re.compile(r"@(\w+)\[(.*?)\]")
NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
KINDS = ("timeout", "exec error", "format", "ungrounded", "wrong value", "llm error")
BASELINE_SYSTEM = (
    "You are a data analyst who answers with code. Reply with ONE complete Python 3 program in a single ```python "
    "block. It must load the data file named in the question from the current working directory, compute the "
    "answer and print it in exactly the format the question asks for (every @name[value] it names).")
# Env names a baseline program should not see (the product scrubs its kernels the same way).
SECRET_HINTS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


@dataclass(frozen=True)
class Question:
    id: int
    level: str
    file_name: str
    prompt: str
    labels: tuple[tuple[str, str], ...]


@dataclass
class Result:
    system: str
    id: int
    level: str
    correct: bool = False
    kind: str = ""                      # "" when correct, else one of KINDS
    ungrounded: bool = False
    calls: int = 0
    prompt_tokens: int = 0
    seconds: float = 0.0
    answer: str = ""
    detail: str = ""
    load: float = 0.0                   # 1-min load average when the question finished
    parts: list[dict[str, Any]] = field(default_factory=list)


# --- data ---------------------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def dabench_prompt(row: dict[str, Any]) -> str:
    """Question, constraints and format as DABench gives them, plus where the file is."""
    return (f"{row['question']}\nConstraints: {row['constraints']}\nFormat: {row['format']}\n"
            f"The data is in the file {row['file_name']} in the current working directory.")


def usable(labels: Sequence[tuple[str, str]]) -> bool:
    # Upstream quirks (PROVENANCE.md): empty labels (ids 116, 352, 473) and "[" (id 273) cannot be scored fairly.
    return bool(labels) and all(value.strip() not in ("", "[") for _, value in labels)


def load_questions(data: Path) -> list[Question]:
    """Every scorable dev question, sorted by id. Exits with one actionable sentence when the data is missing."""
    needed = [data / "da-dev-questions.jsonl", data / "da-dev-labels.jsonl", data / "da-dev-tables"]
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        raise SystemExit(f"DABench data not found in {data} (missing {', '.join(missing)}): put the InfiAgent-DABench "
                         "dev files there (see ../shared/data/dabench/PROVENANCE.md) or pass --data DIR.")
    labels = {row["id"]: tuple((str(n), str(v)) for n, v in row["common_answers"])
              for row in read_jsonl(needed[1])}
    questions = [Question(row["id"], row["level"], row["file_name"], dabench_prompt(row), labels.get(row["id"], ()))
                 for row in read_jsonl(needed[0])]
    return sorted((q for q in questions if usable(q.labels)), key=lambda q: q.id)


def pick_sample(questions: list[Question], easy: int, medium: int, ids: list[int] | None,
                limit: int | None) -> list[Question]:
    if ids:
        by_id = {q.id: q for q in questions}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise SystemExit(f"Unknown or unscorable question id(s) {unknown}: pick ids from da-dev-questions.jsonl.")
        sample = [by_id[i] for i in ids]
    else:
        sample = ([q for q in questions if q.level == "easy"][:easy]
                  + [q for q in questions if q.level == "medium"][:medium])
    return sample[:limit] if limit is not None else sample


def prepare_workdir(root: Path, system: str, question: Question, data: Path) -> Path:
    """A fresh folder outside the repository holding only a copy of the question's CSV."""
    workdir = root / system / f"q{question.id}"
    workdir.mkdir(parents=True)
    shutil.copy2(data / "da-dev-tables" / question.file_name, workdir / question.file_name)
    return workdir


# --- scoring ------------------------------------------------------------------------------------------------

def parse_answers(text: str) -> dict[str, str]:
    """``@name[value]`` pairs; a name given twice keeps its last value (the final answer comes last)."""
    return {name: value for name, value in ANSWER_RE.findall(text)}


def values_equal(got: str, want: str) -> bool:
    got, want = got.strip(), want.strip()
    if got.casefold() == want.casefold():
        return True
    try:
        return abs(float(got) - float(want)) < 1e-6
    except ValueError:
        return False


def score(text: str, labels: Sequence[tuple[str, str]]) -> tuple[bool, bool, list[dict[str, Any]]]:
    """(all right, every label name present, per-part details)."""
    answers = parse_answers(text)
    parts = [{"name": name, "expected": want, "got": answers.get(name),
              "ok": name in answers and values_equal(answers[name], want)} for name, want in labels]
    return all(p["ok"] for p in parts), all(p["got"] is not None for p in parts), parts


def numbers_in(text: str) -> list[str]:
    return NUMBER_RE.findall(THOUSANDS_RE.sub("", text))


def grounded(token: str, pool: Sequence[float]) -> bool:
    """Some printed number equals ``token`` once rounded to the token's decimals (sign ignored)."""
    target = abs(float(token))
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    slack = 0.5 * 10.0 ** (int(exponent or 0) - decimals) + 1e-9 * max(1.0, target)
    return any(abs(x - target) <= slack for x in pool)


def ungrounded_numbers(answer: str, printed: Iterable[str]) -> list[str]:
    """Numbers of the answer's @name[value] pairs that no execution output holds."""
    pool = [abs(float(n)) for text in printed for n in numbers_in(text)]
    tokens = [n for value in parse_answers(answer).values() for n in numbers_in(value)]
    return [n for n in tokens if not grounded(n, pool)]


def classify(correct: bool, complete: bool, *, timed_out: bool, exec_failed: bool, ungrounded: bool) -> str:
    if correct:
        return ""
    if timed_out:
        return "timeout"
    if not complete:
        return "exec error" if exec_failed else "format"
    return "ungrounded" if ungrounded else "wrong value"


# --- product ------------------------------------------------------------------------------------------------

def output_text(output: dict[str, Any]) -> str:
    """What an nbformat output showed as text; tracebacks ground nothing."""
    kind = output.get("output_type")
    if kind == "stream":
        text = output.get("text", "")
    elif kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        text = data.get("text/plain") or data.get("text/markdown") or re.sub(r"<[^>]+>", " ", data.get("text/html", ""))
    else:
        return ""
    return "".join(text) if isinstance(text, list) else str(text)


def round_executions(history: Sequence[Any], round_number: int) -> list[dict[str, Any]]:
    """The round's executed code: ok flag and printed texts. Steps are read by duck typing (``kind`` and
    fields) so the benchmark survives modules moving inside the package."""
    found = []
    for step in history:
        if getattr(step, "kind", "") != "execution" or getattr(step, "round", None) != round_number:
            continue
        if not getattr(step, "code", ""):
            continue  # a text reply or a notice the session added, not something that ran
        texts = [output_text(o) for o in getattr(step, "outputs", ())]
        ok = bool(getattr(step, "ok", False))
        if ok:
            texts.append(getattr(step, "summary", ""))  # the summary can hold the helper's value report
        found.append({"ok": ok, "texts": [t for t in texts if t.strip()]})
    return found


def product_worker(conn: Any, job: dict[str, Any]) -> None:
    """Runs in a spawned process: one fresh session, one round, results back over ``conn``."""
    from taskweaver_lab import TaskWeaverApp

    started, session, fired = time.monotonic(), None, threading.Event()
    watchdog: threading.Timer | None = None
    payload: dict[str, Any] = {}
    try:
        session = TaskWeaverApp(config=job["config"]).create_session(notebook=job["notebook"])
        watchdog = threading.Timer(max(0.0, job["timeout"] - (time.monotonic() - started)),
                                   lambda: (fired.set(), session.stop()))  # the Stop button, at the time limit
        watchdog.daemon = True
        watchdog.start()
        # Usage goes out as it grows so a worker killed later still reports what it spent.
        answer = session.chat(job["prompt"], on_event=lambda step: _send_usage(conn, session, step))
        payload = {"answer": str(answer), "stop": getattr(answer, "stop", ""),
                   "executions": round_executions(session.history, getattr(answer, "round", -1))}
    except Exception as exc:  # the product's own failure: recorded, not fatal to the benchmark
        payload = {"answer": "", "stop": "", "executions": [], "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if watchdog is not None:
            watchdog.cancel()
        payload.update(seconds=time.monotonic() - started, timed_out=fired.is_set())
        if session is not None:
            payload.update(calls=session.usage.calls, prompt_tokens=session.usage.prompt_tokens)
            session.close()
        conn.send(("result", payload))


def _send_usage(conn: Any, session: Any, step: Any) -> None:
    if getattr(step, "kind", "") == "llm_call":
        conn.send(("usage", {"calls": session.usage.calls, "prompt_tokens": session.usage.prompt_tokens}))


def collect_worker(conn: Any, proc: Any, deadline: float) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(final payload or None if the worker died or overran, last usage seen)."""
    usage: dict[str, Any] = {"calls": 0, "prompt_tokens": 0}
    while (remaining := deadline - time.monotonic()) > 0:
        if not conn.poll(min(remaining, 1.0)):
            if not proc.is_alive() and not conn.poll():
                return None, usage
            continue
        try:
            kind, body = conn.recv()
        except EOFError:
            return None, usage
        if kind == "result":
            return body, usage
        usage = body
    return None, usage


def run_product(question: Question, workdir: Path, args: argparse.Namespace) -> Result:
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no state shared with this process
    receiver, sender = ctx.Pipe(duplex=False)
    config = {"base_url": args.base_url, "api_key": args.api_key, "model": args.model, **args.set}
    job = {"config": config, "notebook": str(workdir / "q.ipynb"), "prompt": question.prompt, "timeout": args.timeout}
    proc = ctx.Process(target=product_worker, args=(sender, job), daemon=True)
    started = time.monotonic()
    proc.start()
    sender.close()
    payload, usage = collect_worker(receiver, proc, started + args.timeout + KILL_GRACE_S)
    proc.join(10 if payload is not None else 0)  # a worker that sent its result is closing its session
    if proc.is_alive():  # its kernel exits by itself once its parent is gone (ipykernel's parent poller)
        proc.kill()
        proc.join()
    if payload is None:
        payload = {**usage, "answer": "", "executions": [], "timed_out": True, "seconds": time.monotonic() - started,
                   "error": f"worker ended without a result (exit code {proc.exitcode})"}
    return score_product(question, payload)


def score_product(question: Question, payload: dict[str, Any]) -> Result:
    answer, executions = payload.get("answer", ""), payload.get("executions", [])
    correct, complete, parts = score(answer, question.labels)
    missing = ungrounded_numbers(answer, [t for e in executions for t in e["texts"]])
    exec_failed = payload.get("stop") == "TaskFailure" or bool(payload.get("error")) or (
        bool(executions) and not any(e["ok"] for e in executions))
    kind = classify(correct, complete, timed_out=bool(payload.get("timed_out")), exec_failed=exec_failed,
                    ungrounded=bool(missing))
    detail = payload.get("error", "") or (f"not printed by any execution: {', '.join(missing)}" if missing else "")
    return Result("product", question.id, question.level, correct=correct, kind=kind, ungrounded=bool(missing),
                  calls=payload.get("calls", 0), prompt_tokens=payload.get("prompt_tokens", 0),
                  seconds=round(payload.get("seconds", 0.0), 1), answer=answer, detail=detail, parts=parts)


# --- baseline -----------------------------------------------------------------------------------------------

def extract_code(reply: str) -> str:
    """The first ```python block, else the first fenced block, else the whole reply."""
    for pattern in (r"```(?:python|py)[^\n]*\n(.*?)```", r"```[^\n]*\n(.*?)```"):
        match = re.search(pattern, reply, re.DOTALL | re.IGNORECASE)
        if match:
            return match.group(1)
    return reply


def run_program(code: str, workdir: Path, timeout: float) -> tuple[bool, str, str]:
    """(exited 0 in time, stdout, stderr tail) of ``code`` run by this interpreter in ``workdir``."""
    (workdir / "program.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not any(h in k.upper() for h in SECRET_HINTS)}
    env["MPLBACKEND"] = "Agg"  # no display here: plots must not block
    try:
        done = subprocess.run([sys.executable, "program.py"], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return False, out, f"The program did not finish within {timeout:.0f} s."
    return done.returncode == 0, done.stdout, done.stderr[-3000:]


def ask(client: Any, args: argparse.Namespace, messages: list[dict[str, str]], timeout: float) -> tuple[str, int]:
    """One chat request: (reply text, prompt tokens)."""
    response = client.with_options(timeout=timeout).chat.completions.create(
        model=args.model, messages=messages, temperature=0.0, max_tokens=args.max_tokens)
    tokens = response.usage.prompt_tokens if response.usage else 0
    return response.choices[0].message.content or "", tokens


def run_baseline(question: Question, workdir: Path, client: Any, args: argparse.Namespace) -> Result:
    import openai

    result = Result("baseline", question.id, question.level)
    started = time.monotonic()
    deadline = started + args.timeout
    messages = [{"role": "system", "content": BASELINE_SYSTEM}, {"role": "user", "content": question.prompt}]
    ok, stdout, stderr = False, "", ""
    for _attempt in (1, 2):  # one retry, with the traceback
        if deadline - time.monotonic() <= 1:
            result.kind = "timeout"
            break
        try:
            reply, tokens = ask(client, args, messages, deadline - time.monotonic())
        except openai.APITimeoutError:
            result.kind = "timeout"
            break
        except openai.OpenAIError as exc:
            result.kind, result.detail = "llm error", f"{type(exc).__name__}: {exc}"[:300]
            break
        result.calls, result.prompt_tokens = result.calls + 1, result.prompt_tokens + tokens
        ok, stdout, stderr = run_program(extract_code(reply), workdir,
                                         min(args.exec_timeout, deadline - time.monotonic()))
        if ok:
            break
        messages += [{"role": "assistant", "content": reply},
                     {"role": "user", "content": f"The program failed:\n{stderr}\nReply with the whole corrected program."}]
    result.seconds = round(time.monotonic() - started, 1)
    return score_baseline(result, ok, stdout, stderr, question, timed_out=time.monotonic() >= deadline)


def score_baseline(result: Result, ok: bool, stdout: str, stderr: str, question: Question, *,
                   timed_out: bool) -> Result:
    result.answer = stdout[-4000:]
    result.correct, complete, result.parts = score(stdout, question.labels)
    if result.kind and not result.correct:  # timeout or llm error, decided while running
        return result
    result.kind = classify(result.correct, complete, timed_out=timed_out, exec_failed=not ok, ungrounded=False)
    if not ok and not result.detail:
        result.detail = stderr.strip().splitlines()[-1][:300] if stderr.strip() else "no output"
    return result


# --- environment --------------------------------------------------------------------------------------------

def served_models(base_url: str) -> list[str]:
    """Model ids from ``/v1/models``; exits with one sentence when the endpoint does not answer."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=10) as response:
            body = json.load(response)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"No OpenAI-compatible endpoint answers at {base_url} ({exc}): start one (e.g. "
                         "`jupyter taskweaver local-model start`) or pass --base-url.")
    return [describe_model(m) for m in body.get("data", [])]


def describe_model(entry: dict[str, Any]) -> str:
    """``id`` plus what llama-server's ``meta`` tells (size, quantization, context), when present."""
    meta = entry.get("meta") or {}
    facts = [f"{meta['n_params'] / 1e9:.2f} B params" if meta.get("n_params") else "",
             str(meta.get("ftype", "")), f"ctx {meta['n_ctx']}" if meta.get("n_ctx") else ""]
    facts = [f for f in facts if f]
    return str(entry.get("id")) + (f" ({', '.join(facts)})" if facts else "")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cores()} CPUs ({cpu})"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load() -> float:
    """1-minute load average (other work on the cores slows the model: timings are only comparable when idle)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def inside_repo(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO)


# --- report -------------------------------------------------------------------------------------------------

def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def stats(results: Sequence[Result]) -> dict[str, Any]:
    kinds = {k: sum(r.kind == k for r in results) for k in KINDS}
    return {"n": len(results),
            "accuracy": mean([100.0 * r.correct for r in results]),
            "calls": mean([r.calls for r in results]),
            "prompt_tokens": mean([r.prompt_tokens for r in results]),
            "seconds": mean([r.seconds for r in results]),
            "failures": {k: n for k, n in kinds.items() if n},
            "ungrounded": sum(r.ungrounded for r in results)}


def summaries(results: Sequence[Result]) -> dict[str, dict[str, dict[str, Any]]]:
    """system -> level ("easy", "medium", ..., "all") -> stats."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for system in sorted({r.system for r in results}, reverse=True):  # product first
        mine = [r for r in results if r.system == system]
        levels = sorted({r.level for r in mine})
        out[system] = {level: stats([r for r in mine if r.level == level]) for level in levels}
        out[system]["all"] = stats(mine)
    return out


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_table(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = ["| system | level | n | accuracy % | mean LLM calls | mean prompt tokens | mean s/question "
             "| failures | ungrounded |", "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for system, levels in summary.items():
        for level, s in levels.items():
            failures = ", ".join(f"{k} {n}" for k, n in s["failures"].items()) or "none"
            ungrounded = str(s["ungrounded"]) if system == "product" else "n/a (its output)"
            lines.append(f"| {system} | {level} | {s['n']} | {fmt(s['accuracy'])} | {fmt(s['calls'])} "
                         f"| {fmt(s['prompt_tokens'], '.0f')} | {fmt(s['seconds'])} | {failures} | {ungrounded} |")
    return lines


def question_table(results: Sequence[Result]) -> list[str]:
    lines = ["| id | level | system | correct | failure | LLM calls | prompt tokens | s | ungrounded | detail |",
             "|---:|---|---|---|---|---:|---:|---:|---|---|"]
    for r in sorted(results, key=lambda r: (r.id, r.system != "product")):
        detail = r.detail.replace("|", "\\|").replace("\n", " ")[:120]
        lines.append(f"| {r.id} | {r.level} | {r.system} | {'yes' if r.correct else 'no'} | {r.kind or '-'} "
                     f"| {r.calls} | {r.prompt_tokens} | {r.seconds:.1f} | {'YES' if r.ungrounded else '-'} "
                     f"| {detail} |")
    return lines


def goals(summary: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str, str, bool]]:
    """(goal, target, measured, met); a goal nobody measured is not met."""
    product = summary.get("product", {}).get("easy", {})
    baseline = summary.get("baseline", {}).get("easy", {})
    accuracy, base_accuracy = product.get("accuracy"), baseline.get("accuracy")
    points = None if accuracy is None or base_accuracy is None else accuracy - base_accuracy
    seconds = product.get("seconds")
    ungrounded = summary.get("product", {}).get("all", {}).get("ungrounded")
    return [
        ("product accuracy, easy", f">= {GOAL_ACCURACY:.0f} %", fmt(accuracy), accuracy is not None and accuracy >= GOAL_ACCURACY),
        ("points above baseline, easy", f">= {GOAL_POINTS:.0f}", fmt(points, "+.1f"), points is not None and points >= GOAL_POINTS),
        ("ungrounded product answers", "0", "n/a" if ungrounded is None else str(ungrounded), ungrounded == 0),
        ("mean s per easy question (product)", f"<= {GOAL_SECONDS:.0f}", fmt(seconds), seconds is not None and seconds <= GOAL_SECONDS),
    ]


def report(results: Sequence[Result], args: argparse.Namespace, env: dict[str, str]) -> tuple[str, bool]:
    summary = summaries(results)
    checked = goals(summary)
    peak = max([float(env["load_start"])] + [r.load for r in results])
    lines = ["## DABench dev, real model: product vs one-call baseline", "",
             f"- model: `{args.model}` at {args.base_url} (endpoint serves: {env['served']})",
             f"- machine: {env['machine']}; 1-min load {env['load_start']} at start, peak {peak:.2f} after a question",
             f"- sample: {env['sample']}", f"- per-question limit: {args.timeout:.0f} s", ""]
    if peak > cores():
        lines += ["**Warning: the load exceeded the number of CPUs: other work competed with the model, so the "
                  "seconds (and timeouts) overstate the product's and the baseline's cost.**", ""]
    if args.verbose:
        lines += question_table(results) + [""]
    lines += summary_table(summary) + ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    lines += [f"| {goal} | {target} | {measured} | {'yes' if met else 'NO'} |" for goal, target, measured, met in checked]
    return "\n".join(lines), all(met for *_, met in checked)


def write_json(path: Path, results: Sequence[Result], env: dict[str, str], args: argparse.Namespace) -> None:
    summary = summaries(results)
    raw = {"env": env, "model": args.model, "base_url": args.base_url, "timeout_s": args.timeout,
           "summary": summary, "goals": [dict(zip(("goal", "target", "measured", "met"), g)) for g in goals(summary)],
           "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(raw, indent=1), encoding="utf-8")


# --- main ---------------------------------------------------------------------------------------------------

def parse_set(item: str) -> tuple[str, Any]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--set wants NAME=VALUE, got {item!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value  # a bare string


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Details (sample, scoring, goals) are in the module docstring.")
    add = parser.add_argument
    add("--data", type=Path, default=DEFAULT_DATA, help="DABench folder (default: %(default)s)")
    add("--easy", type=int, default=40, help="first N scorable 'easy' questions by id (default: %(default)s)")
    add("--medium", type=int, default=20, help="first N scorable 'medium' questions by id (default: %(default)s)")
    add("--ids", type=lambda s: [int(x) for x in s.split(",") if x.strip()], help="run these ids instead (e.g. 5,6)")
    add("--limit", type=int, help="keep only the sample's first N questions (quick runs)")
    add("--systems", default="product,baseline", help="comma-separated: product, baseline (default: both)")
    add("--base-url", default=DEFAULT_BASE_URL, help="OpenAI-compatible endpoint (default: %(default)s)")
    add("--api-key", default="local", help="API key for the endpoint (default: %(default)s)")
    add("--model", default="local-coder", help="model name for every request (default: %(default)s)")
    add("--timeout", type=float, default=300.0, help="wall-clock seconds per question and system (default: %(default)s)")
    add("--exec-timeout", type=float, default=120.0, help="seconds one baseline program may run (default: %(default)s)")
    add("--max-tokens", type=int, default=1024, help="completion cap of a baseline request (default: %(default)s)")
    add("--set", type=parse_set, action="append", default=[], metavar="NAME=VALUE",
        help="extra TaskWeaverLab config for the product, VALUE as JSON or a string (repeatable)")
    add("--verbose", action="store_true", help="also print one row per question and system")
    add("--json", type=Path, help="write raw results here (outside the repository: they quote CC BY-NC labels)")
    add("--keep", action="store_true", help="keep the temporary work folders (notebooks, programs) and print where")
    args = parser.parse_args(argv)
    args.set = dict(args.set)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not args.systems or set(args.systems) - {"product", "baseline"}:
        parser.error("--systems takes product, baseline or both")
    if args.json and inside_repo(args.json):
        parser.error("--json must point outside the repository (the results quote CC BY-NC labels)")
    return args


def preflight(args: argparse.Namespace) -> None:
    """Fail early, with one sentence each, on what would make every question fail."""
    if "product" in args.systems:
        try:
            from taskweaver_lab import TaskWeaverApp  # noqa: F401
        except ModuleNotFoundError as exc:
            if exc.name != "taskweaver_lab":
                raise SystemExit(f"taskweaver_lab cannot be imported ({exc}): install its dependencies.")
            raise SystemExit("taskweaver_lab is not installed: run `pip install -e .` in the repository.")
        except ImportError as exc:  # e.g. a tree caught mid-refactor
            raise SystemExit(f"taskweaver_lab cannot be imported ({exc}): fix the package, then run again.")
    if "baseline" in args.systems:
        try:
            import openai  # noqa: F401
        except ImportError as exc:
            raise SystemExit(f"The baseline needs the openai package ({exc}): `pip install openai`.")


def run_all(sample: Sequence[Question], args: argparse.Namespace, root: Path) -> list[Result]:
    """Each system over the whole sample in turn (see the docstring on prompt caching)."""
    results: list[Result] = []
    client = None
    if "baseline" in args.systems:
        import openai

        client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0)
    for system in ("product", "baseline"):
        if system not in args.systems:
            continue
        for i, question in enumerate(sample, 1):
            workdir = prepare_workdir(root, system, question, args.data)
            result = (run_product(question, workdir, args) if system == "product"
                      else run_baseline(question, workdir, client, args))
            result.load = round(load(), 2)
            results.append(result)
            print(f"[{system} {i}/{len(sample)}] id {question.id} ({question.level}): "
                  f"{'right' if result.correct else result.kind}, {result.calls} calls, "
                  f"{result.prompt_tokens} prompt tokens, {result.seconds:.1f} s"
                  f"{', UNGROUNDED' if result.ungrounded else ''}", file=sys.stderr, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sample = pick_sample(load_questions(args.data), args.easy, args.medium, args.ids, args.limit)
        if not sample:
            raise SystemExit("The sample is empty: raise --easy/--medium/--limit or pass --ids.")
        preflight(args)
        env = {"served": ", ".join(served_models(args.base_url)) or "nothing listed", "machine": machine(),
               "load_start": f"{load():.2f}",
               "sample": f"{len(sample)} question(s), ids {', '.join(str(q.id) for q in sample)}"}
        root = Path(tempfile.mkdtemp(prefix="twl-dabench-"))
        if inside_repo(root):
            raise SystemExit(f"The temporary folder {root} is inside the repository: point TMPDIR elsewhere.")
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        results = run_all(sample, args, root)
    finally:
        if args.keep:
            print(f"work folders kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    text, met = report(results, args, env)
    print(text)
    if args.json:
        write_json(args.json, results, env, args)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
