"""Plugins: loading and validation, TaskWeaver files unchanged, a real kernel, the ranker."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from jupyter_client.manager import start_new_kernel

from taskweaver_lab.kernel_side import plugin_runtime
from taskweaver_lab.plugins import (
    PluginSpec, builtin_plugins_dir, kernel_artifacts_code, kernel_bootstrap_code, load_plugins,
    parse_artifacts, select_plugins,
)

REPO = Path(__file__).resolve().parent.parent
TW_PLUGINS = REPO / "tests" / "fixtures" / "tw_plugins"
PLANTED_ANOMALIES = 7  # scripts/make_sample_data.py asserts this


# --- Loading and validation ------------------------------------------------------------------

def test_builtins_load_without_errors() -> None:
    specs, errors = load_plugins([])
    assert errors == []
    by_name = {s.name: s for s in specs}
    assert set(by_name) == {"sql_pull_data", "anomaly_detection"}
    assert by_name["sql_pull_data"].signature() == (
        "sql_pull_data(query: str, database: str) -> (df: DataFrame, description: str)")
    assert by_name["anomaly_detection"].signature().startswith(
        "anomaly_detection(df: DataFrame, time_col_name: str, value_col_name: str)")
    assert "register_plugin" in by_name["sql_pull_data"].source
    assert load_plugins([], include_builtins=False) == ([], [])


def _write(folder: Path, name: str, yaml_text: str, py_text: str | None) -> None:
    (folder / f"{name}.yaml").write_text(yaml_text)
    if py_text is not None:
        (folder / f"{name}.py").write_text(py_text)


GOOD_PY = "from taskweaver.plugin import Plugin, register_plugin\n\n@register_plugin\nclass P(Plugin):\n    def __call__(self, x):\n        return 1\n"


def _yaml(name: str, drop: str = "", param_type: str = "str") -> str:
    lines = [f"name: {name}", "enabled: true", "description: A plugin used by the loader tests.",
             f"parameters:\n  - name: x\n    type: {param_type}\n    description: some input",
             "returns:\n  - name: y\n    type: int\n    description: some output"]
    return "\n".join(line for line in lines if not line.startswith(drop + ":")) + "\n" if drop else "\n".join(lines) + "\n"


def test_one_bad_plugin_never_stops_the_others(tmp_path: Path) -> None:
    _write(tmp_path, "good_one", _yaml("good_one"), GOOD_PY)
    _write(tmp_path, "broken_yaml", "name: [unclosed\n", GOOD_PY)
    _write(tmp_path, "no_description", _yaml("no_description", drop="description"), GOOD_PY)
    _write(tmp_path, "bad_syntax", _yaml("bad_syntax"), GOOD_PY + "def oops(:\n")
    _write(tmp_path, "no_python", _yaml("no_python"), None)
    _write(tmp_path, "bad_param", _yaml("bad_param", param_type="''"), GOOD_PY)
    _write(tmp_path, "unregistered", _yaml("unregistered"), "def f():\n    return 1\n")
    specs, errors = load_plugins([str(tmp_path)])
    assert {s.name for s in specs} == {"sql_pull_data", "anomaly_detection", "good_one"}
    joined = "\n".join(errors)
    assert len(errors) == 6, joined
    expectations = {
        "broken_yaml.yaml": "not valid YAML",
        "no_description.yaml": "field 'description': missing",
        "bad_syntax.py": "SyntaxError",
        "no_python.yaml": "no_python.py not found",
        "bad_param.yaml": "field 'parameters[0].type'",
        "unregistered.py": "no @register_plugin",
    }
    for file_name, phrase in expectations.items():
        assert any(file_name in e and phrase in e for e in errors), (file_name, joined)
    assert any("bad_syntax.py: line 7" in e for e in errors), joined


def test_field_types_are_checked(tmp_path: Path) -> None:
    text = _yaml("typed").replace("enabled: true", "enabled: maybe") + "configurations: [1, 2]\n"
    _write(tmp_path, "typed", text, GOOD_PY)
    _write(tmp_path, "print", _yaml("print"), GOOD_PY)  # would shadow the built-in print()
    _, errors = load_plugins([str(tmp_path)], include_builtins=False)
    assert any("typed.yaml" in e and "field 'enabled'" in e for e in errors)
    assert any("typed.yaml" in e and "field 'configurations'" in e for e in errors)
    assert any("print.yaml" in e and "field 'name'" in e for e in errors)


def test_later_directory_overrides_a_builtin(tmp_path: Path) -> None:
    _write(tmp_path, "sql_pull_data", _yaml("sql_pull_data"), GOOD_PY)
    specs, errors = load_plugins([str(tmp_path)])
    assert errors == []
    mine = [s for s in specs if s.name == "sql_pull_data"]
    assert len(mine) == 1 and mine[0].yaml_path.startswith(str(tmp_path))


def test_missing_directory_is_reported() -> None:
    _, errors = load_plugins(["/nonexistent/plugins"], include_builtins=False)
    assert errors == ["/nonexistent/plugins: plugin directory not found"]


def test_taskweaver_format_fixtures_load_unchanged() -> None:
    specs, errors = load_plugins([str(TW_PLUGINS)], include_builtins=False)
    assert errors == []
    by_name = {s.name: s for s in specs}
    assert set(by_name) == {"word_stats", "shout"}
    assert by_name["word_stats"].configurations == {"prefix": "Counted "}
    prompt = by_name["word_stats"].prompt_text()
    assert prompt.splitlines()[0] == "word_stats(text: str) -> (count: int, description: str)"
    assert "- text: The text whose words are counted." in prompt
    assert by_name["shout"].signature() == "shout(text: str) -> str"


def test_context_get_env_prefers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = plugin_runtime.PluginContext("demo", {"token": "from-yaml"})
    assert ctx.get_env("demo", "token") == "from-yaml"
    monkeypatch.setenv("PLUGIN_demo_token", "from-env")
    assert ctx.get_env("demo", "token") == "from-env"
    with pytest.raises(KeyError, match="PLUGIN_demo_missing"):
        ctx.get_env("demo", "missing")


# --- Selection --------------------------------------------------------------------------------

def _spec(name: str, description: str, required: bool = False, enabled: bool = True) -> PluginSpec:
    return PluginSpec(name, description, (), (), enabled, required, False, "", {}, "", "", "")


def test_select_returns_all_enabled_when_few() -> None:
    specs = [_spec("a_one", "alpha"), _spec("b_two", "beta", enabled=False), _spec("c_three", "gamma")]
    assert [s.name for s in select_plugins(specs, "anything", limit=5)] == ["a_one", "c_three"]


def test_select_keeps_required_and_ranks_the_rest() -> None:
    specs = [_spec(f"filler_{i}", f"does unrelated thing number {i}") for i in range(10)]
    specs.insert(3, _spec("weather_lookup", "get the weather forecast for a city"))
    specs.append(_spec("audit_log", "always available audit logger", required=True))
    chosen = select_plugins(specs, "what is the weather forecast in Paris?", limit=3)
    names = [s.name for s in chosen]
    assert "audit_log" in names and "weather_lookup" in names
    assert len(names) <= 3
    assert names == [s.name for s in specs if s.name in names]  # load order, for stable prompts


def test_ranking_finds_paraphrases_among_a_thousand_plugins() -> None:
    """A floor against regressions (the issue-13 baseline, 90 %), on the benchmark's labelled requests that share a
    word family with the plugin they need; ``benchmarks/plugin_recall.py`` reports every set against the 95 % goal."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import plugin_recall

    for generated in (0, plugin_recall.GENERATED):
        specs = plugin_recall.registry(generated)
        value, misses = plugin_recall.recall(specs, plugin_recall.TUNING + plugin_recall.HELD_OUT, 5)
        assert value >= 0.9, (generated, misses)
    assert len(plugin_recall.registry(plugin_recall.GENERATED)) == 1030  # distinct names: none overrides another


def test_index_is_built_once_per_plugin_set_and_follows_a_new_set() -> None:
    from taskweaver_lab.plugin_index import index_for

    specs = [_spec(f"filler_{i}", f"does unrelated thing number {i}") for i in range(10)]
    assert index_for(specs) is index_for(specs) is index_for(list(specs))
    changed = specs[:-1] + [_spec("weather_lookup", "get the weather forecast for a city")]
    assert index_for(changed) is not index_for(specs)
    assert [s.name for s in select_plugins(changed, "weather in Paris", limit=3)] == ["weather_lookup"]


def test_stemming_meets_word_families() -> None:
    from taskweaver_lab.plugin_index import analyze

    families = [("summary summarize summarization summarizing", 1), ("translate translation translating", 1),
                ("transcribe transcription", 1), ("convert conversion converter", 1), ("anomaly anomalies", 1),
                ("detect detection detector", 1), ("classify classification", 1), ("running run", 1)]
    for words, distinct in families:
        assert len(set(analyze(words))) == distinct, (words, analyze(words))
    assert analyze("sql_pull_data camelCase k-means") == ["sql", "pull", "data", "camel", "case", "mean", "kmean"]


# --- A real kernel ----------------------------------------------------------------------------

class Kernel:
    """A real ipykernel; ``run`` returns (stdout, stderr, error name or '')."""

    def __init__(self, cwd: Path) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(self, code: str) -> tuple[str, str, str]:
        streams = {"stdout": "", "stderr": ""}
        error: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                streams[msg["content"]["name"]] += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                error.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

        self.client.execute_interactive(code, store_history=False, output_hook=hook, timeout=60)
        return streams["stdout"], streams["stderr"], "\n".join(error)

    def names(self) -> set[str]:
        out, _, err = self.run("print(sorted(get_ipython().user_ns))")
        assert not err, err
        return set(ast.literal_eval(out.strip()))

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kernel_cwd")
    shutil.copy(REPO / "sample_data" / "anomaly.db", folder)
    shutil.copy(REPO / "sample_data" / "sales.csv", folder)
    return folder


@pytest.fixture(scope="module")
def kernel(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kernel, set[str], str]]:
    broken = tmp_path_factory.mktemp("broken_plugins")
    _write(broken, "needs_missing_lib", _yaml("needs_missing_lib"), "import not_a_real_module_xyz\n" + GOOD_PY)
    specs, errors = load_plugins([str(TW_PLUGINS), str(broken)])
    assert errors == []
    k = Kernel(workspace)
    before = k.names()
    out, stderr, err = k.run(kernel_bootstrap_code(specs, str(workspace)))
    assert not err, err
    yield k, k.names() - before, out
    k.close()


def test_bootstrap_binds_exactly_the_plugin_names(kernel: tuple[Kernel, set[str], str]) -> None:
    k, added, _ = kernel
    assert added == {"sql_pull_data", "anomaly_detection", "word_stats", "shout"}
    out, _, err = k.run("import sys\nprint('taskweaver.plugin' in sys.modules, '_taskweaver_lab_plugins' in sys.modules)")
    assert (out.strip(), err) == ("True True", "")


def test_kernel_load_error_is_one_clear_line(kernel: tuple[Kernel, set[str], str]) -> None:
    _, _, out = kernel
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out
    assert lines[0].startswith("taskweaver_lab: plugin needs_missing_lib not loaded (")
    assert "ModuleNotFoundError" in lines[0] and "not_a_real_module_xyz" in lines[0]


def test_sql_then_anomaly_detection_in_kernel(kernel: tuple[Kernel, set[str], str]) -> None:
    k, _, _ = kernel
    out, _, err = k.run('df, d = sql_pull_data("SELECT * FROM time_series", "anomaly.db")\nprint(d)')
    assert not err, err
    assert "480 rows and 2 columns" in out and "ts (" in out and "val (float64)" in out
    out, _, err = k.run('result, desc = anomaly_detection(df, "ts", "val")\n'
                        'print(desc)\nprint(int(result["Is_Anomaly"].sum()), "Is_Anomaly" in df.columns)')
    assert not err, err
    assert f"There are {PLANTED_ANOMALIES} anomalies" in out
    assert out.splitlines()[1] == f"{PLANTED_ANOMALIES} False"  # the caller's frame is left alone


def test_anomaly_detection_names_existing_columns(kernel: tuple[Kernel, set[str], str]) -> None:
    k, _, _ = kernel
    _, _, err = k.run('anomaly_detection(df, "time", "val")')
    assert "KeyError" in err and "'time'" in err and "Columns: ts, val" in err


@pytest.mark.parametrize("query, phrase", [
    ("DELETE FROM time_series", "only SELECT queries run, this one is DELETE"),
    ("ATTACH DATABASE 'other.db' AS other", "this one is ATTACH"),
    ("SELECT 1; DROP TABLE time_series", "only one statement may run"),
    ("PRAGMA writable_schema = 1", "this one is PRAGMA"),
    ("WITH doomed AS (SELECT 1) DELETE FROM time_series", "this one is DELETE"),
    ("/* sneaky */ INSERT INTO time_series VALUES ('x', 1)", "this one is INSERT"),
])
def test_sql_pull_data_refuses_writes(kernel: tuple[Kernel, set[str], str], query: str, phrase: str) -> None:
    k, _, _ = kernel
    _, _, err = k.run(f"sql_pull_data({query!r}, 'anomaly.db')")
    assert err.startswith("ValueError") and phrase in err, err
    out, _, err = k.run('print(len(sql_pull_data("SELECT ts FROM time_series", "anomaly.db")[0]))')
    assert (out.strip(), err) == ("480", "")


def test_sql_pull_data_reads_comments_ctes_and_urls(kernel: tuple[Kernel, set[str], str]) -> None:
    k, _, _ = kernel
    code = (
        "q = '''-- the biggest values; not a second statement\n"
        "WITH big AS (SELECT * FROM time_series WHERE val > 60) SELECT count(*) AS n FROM big; '''\n"
        "print(sql_pull_data(q, 'anomaly.db')[0]['n'][0])\n"
        "print(sql_pull_data(\"SELECT replace('a;b', ';', '-') AS s\", 'sqlite:///anomaly.db')[0]['s'][0])\n"
    )
    out, _, err = k.run(code)
    assert not err, err
    assert out.split() == ["3", "a-b"]


def test_sqlite_connection_itself_is_read_only(kernel: tuple[Kernel, set[str], str]) -> None:
    k, _, _ = kernel
    code = ("import sys\nconn = sys.modules['_taskweaver_lab_plugins.sql_pull_data'].open_sqlite_read_only('anomaly.db')\n"
            "conn.execute('DELETE FROM time_series')")
    _, _, err = k.run(code)
    assert "DatabaseError" in err or "OperationalError" in err, err


def test_taskweaver_plugin_artifacts_and_logs(kernel: tuple[Kernel, set[str], str], workspace: Path) -> None:
    k, _, _ = kernel
    out, _, err = k.run('print(word_stats("one two three")[1])\nprint(shout("hi"))')
    assert not err, err
    assert out.splitlines() == ["Counted 3 words; the list is in word_list.txt", "HI"]
    assert (workspace / "word_list.txt").read_text() == "one\ntwo\nthree"
    out, _, _ = k.run(kernel_artifacts_code())
    artifacts = parse_artifacts(out)
    assert [(a["name"], a["path"], a["plugin"]) for a in artifacts] == [("word_list", "word_list.txt", "word_stats")]
    out, _, _ = k.run(kernel_artifacts_code())
    assert parse_artifacts(out) == []  # read-and-clear
    out, _, _ = k.run("import sys\nprint(sys.modules['_taskweaver_lab_plugins'].LOGS[-1])")
    assert "Plugin-word_stats" in out and "counting words" in out


def test_builtin_dir_is_the_repository_plugins_folder() -> None:
    assert builtin_plugins_dir() == REPO / "plugins"


def test_rebootstrap_replaces_the_plugin_set(workspace: Path) -> None:
    specs, _ = load_plugins([str(TW_PLUGINS)])
    k = Kernel(workspace)
    try:
        before = k.names()
        assert k.run(kernel_bootstrap_code(specs, str(workspace)))[2] == ""
        only_shout = [s for s in specs if s.name == "shout"]
        out, _, err = k.run(kernel_bootstrap_code(only_shout, str(workspace)))
        assert (out, err) == ("", "")
        assert k.names() - before == {"shout"}
        assert k.run('print(shout("again"))')[0].strip() == "AGAIN"
    finally:
        k.close()
