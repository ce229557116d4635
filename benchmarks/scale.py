"""Scale goals of issue 13, each measured against a baseline run side by side in the same process.

    python benchmarks/scale.py              # the plugin goals (about a minute: it starts 6 kernels)
    python benchmarks/scale.py --server     # also 20 concurrent sessions through a real Jupyter server

Prints one Markdown table: goal, measured, baseline (measured in this run), ratio, PASS/FAIL; exits 1 when a
goal is missed. The baselines are what the product did before the change being judged:

- selection: ``select_plugins`` over its index (built once per plugin set) against the ranking it replaced,
  which tokenized every plugin again on every call (``lexical_rank`` over each plugin's text);
- recall@5: the 100 labelled paraphrased requests of ``plugin_recall.py`` among 1,030 plugins, against the
  same replaced ranking;
- session start: app + kernel + setup with 1,000 generated plugins (YAML + .py files) against the same with
  the 2 built-in ones (the goal is a ratio: kernel start-up time cancels out);
- ``--server`` (``scale_server.py``): 20 concurrent sessions x 10 turns through a real Jupyter server: errors,
  turn time p95 against one session alone, a GET p95 against the idle server, memory growth per 100 rounds.

Timings depend on the machine's load (the report prints it); ratios are what the goals judge.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plugin_recall  # noqa: E402
from taskweaver_lab.plugins import PluginSpec, lexical_rank, select_plugins  # noqa: E402

LIMIT = 5
Row = tuple[str, str, float, float, bool, str]  # goal, unit, measured, baseline, met, note


def replaced_select(specs: Sequence[PluginSpec], query: str, limit: int) -> list[PluginSpec]:
    """The ranking before the index: every call tokenizes every plugin's text again (the baseline)."""
    enabled = [s for s in specs if s.enabled]
    if len(enabled) <= limit:
        return enabled
    required = [s for s in enabled if s.required]
    optional = [s for s in enabled if not s.required]
    texts = []
    for spec in optional:
        fields = [spec.name] * 3 + [spec.description, spec.examples]
        for item in spec.parameters + spec.returns:
            fields += [str(item.get("name", "")), str(item.get("description", ""))]
        texts.append(" ".join(fields))
    ranked = lexical_rank(texts, query)
    chosen = {optional[i].name for i, score in ranked[:max(0, limit - len(required))] if score > 0}
    return [s for s in enabled if s.required or s.name in chosen]


def per_call_ms(select: Callable[..., Any], specs: list[PluginSpec], queries: list[str], repeat: int = 2) -> float:
    select(specs, queries[0], LIMIT)  # the index (if any) is built once per set: not part of a call
    times = []
    for _ in range(repeat):
        for query in queries:
            started = time.perf_counter()
            select(specs, query, LIMIT)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def recall_at_5(select: Callable[..., Any], specs: list[PluginSpec]) -> float:
    requests = plugin_recall.all_requests()
    found = sum(expected in {s.name for s in select(specs, query, LIMIT)} for query, expected in requests)
    return found / len(requests)


def plugin_rows() -> list[Row]:
    specs = plugin_recall.registry(plugin_recall.GENERATED)
    queries = [q for q, _ in plugin_recall.all_requests()]
    new_ms, old_ms = per_call_ms(select_plugins, specs, queries), per_call_ms(replaced_select, specs, queries[:20], 1)
    new_recall, old_recall = recall_at_5(select_plugins, specs), recall_at_5(replaced_select, specs)
    return [
        (f"plugin selection, {len(specs)} plugins <= 2 ms per call", "ms", new_ms, old_ms, new_ms <= 2.0,
         "baseline: the ranking it replaced"),
        (f"recall@5 of paraphrased requests, {len(specs)} plugins >= 0.95", "", new_recall, old_recall,
         new_recall >= 0.95, f"{len(queries)} labelled requests (plugin_recall.py)"),
    ]


def write_generated_plugins(folder: Path, count: int) -> None:
    """``count`` plugin files as a plugin author writes them (YAML + a Plugin class whose call fits it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for spec in plugin_recall.generated_plugins(count):
        params = "\n".join(f"  - name: {p['name']}\n    type: {p['type']}\n    description: {p['description']}"
                           for p in spec.parameters)
        (folder / f"{spec.name}.yaml").write_text(
            f"name: {spec.name}\nenabled: true\ndescription: {spec.description}\nparameters:\n{params}\n"
            "returns:\n  - name: df\n    type: DataFrame\n    description: one row per item\n")
        (folder / f"{spec.name}.py").write_text(
            "from taskweaver.plugin import Plugin, register_plugin\n\n\n@register_plugin\nclass Generated(Plugin):\n"
            "    def __call__(self, source: str, limit: int = 10):\n"
            "        return [source] * limit\n")


def session_start_s(plugin_dirs: list[str], workspace: Path) -> float:
    from taskweaver_lab.session import TaskWeaverApp

    started = time.perf_counter()
    app = TaskWeaverApp(config={"plugin_dirs": plugin_dirs, "base_url": "http://127.0.0.1:9/v1"})
    session = app.create_session(notebook=workspace / f"nb{time.monotonic_ns()}.ipynb")
    elapsed = time.perf_counter() - started
    session.close()
    return elapsed


def session_rows(runs: int = 3) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "plugins"
        write_generated_plugins(folder, 1000)
        many, few = [], []
        for _ in range(runs):  # interleaved, so load changes hit both
            few.append(session_start_s([], Path(tmp)))
            many.append(session_start_s([str(folder)], Path(tmp)))
    measured, baseline = statistics.median(many), statistics.median(few)
    return [("session start with 1,002 plugins <= 1.5x with the 2 built-ins", "s", measured, baseline,
             measured <= 1.5 * baseline, f"median of {runs}, kernel start included")]


def print_table(rows: list[Row]) -> bool:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| goal | measured | baseline | ratio | result | note |")
    print("|---|---|---|---|---|---|")
    for goal, unit, measured, baseline, met, note in rows:
        ratio = measured / baseline if baseline else float("nan")
        fmt = (lambda v: f"{v:.3f} {unit}".strip()) if unit != "" else (lambda v: f"{v:.2f}")
        print(f"| {goal} | {fmt(measured)} | {fmt(baseline)} | {ratio:.3g}x | {'PASS' if met else 'FAIL'} | {note} |")
    return all(row[4] for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="store_true", help="also 20 concurrent sessions through a real server")
    parser.add_argument("--no-kernels", action="store_true", help="only the goals that start no kernel")
    args = parser.parse_args(argv)
    rows = plugin_rows()
    if not args.no_kernels:
        rows += session_rows()
    if args.server:
        from scale_server import server_rows

        rows += server_rows()
    return 0 if print_table(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
