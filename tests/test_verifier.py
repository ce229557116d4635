"""Verifier unit tests: exact source IPython runs, rules named with lines, zero noise on data work."""
from __future__ import annotations

import pytest

from taskweaver_lab.verifier import Policy, verify

WS = "/home/analyst/project"
POLICY = Policy(workspace=WS)


def rules(code: str, policy: Policy = POLICY) -> set[str]:
    return {v.rule for v in verify(code, policy).violations}


@pytest.mark.parametrize("code", [
    "import pandas as pd\ndf = pd.read_csv('data.csv')\ndf.query('a > 1')",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('plot.png')",
    "x = 3\nprint(f'{x:.2f} and {x!r}')",
    "open('out.txt', 'w').write('x')",
    f"open('{WS}/sub/out.txt', 'w')",
    "import numpy as np\nnp.load('a.npy')",
    "print('{:.1f}'.format(2.0))",
    "import os\nprint(os.path.join('a', 'b'), os.listdir('.'))",
    "from io import StringIO\nbuf = StringIO('a,b')",
    "from scipy import signal, stats",
    "df2 = df.query('city == \"sys\" and a > @lim')",
    "if __name__ == '__main__':\n    pass",
    "print(getattr(df, 'shape'))",
    "styled = df.style.format('{:.2f}')",
])
def test_ordinary_code_passes(code: str) -> None:
    verdict = verify(code, POLICY)
    assert verdict.ok, verdict.feedback()


@pytest.mark.parametrize("code,rule", [
    ("o = open\no('x')", "builtin"),
    ("@exec\ndef f(): pass", "dynamic_code"),
    ("import typing\ntyping.sys.modules", "module_reach"),
    ("import pandas as pd\npd.io.common.os", "module_reach"),
    ("import numpy as np\nnp.ctypeslib", "module_reach"),
    ("get_ipython().system('ls')", "ipython"),
    ("!pip install x || cat /etc/passwd", "ipython"),
    ("x = 1 # comment \\\n!ls", "ipython"),
    ("%%bash\nls", "ipython"),
    ("obj?", "ipython"),
    ("().__class__.__subclasses__()", "dunder"),
    ("f = lambda: 0\nf.__globals__", "dunder"),
    ("import pandas as pd\npd.read_pickle('x.pkl')", "deserialize"),
    ("import numpy as np\nnp.load('x.npy', allow_pickle=True)", "deserialize"),
    ("eval('1')", "dynamic_code"),
    ("compile('1', 'f', 'eval')", "dynamic_code"),
    ("t = '{}'\nt.format(1)", "format"),
    ("df.query('a > 1', engine='python')", "pandas_eval"),
    ("expr = 'a > 1'\ndf.query(expr)", "pandas_eval"),
    ("import threading", "import"),
    ("import multiprocessing", "import"),
    ("import atexit", "import"),
    ("import signal", "import"),
    ("import ctypes", "import"),
    ("import subprocess", "import"),
    ("open('/etc/passwd')", "path"),
    ("open('../../secret')", "path"),
    ("import pandas as pd\npd.read_csv('https://example.com/x.csv')", "network"),
    ("import pandas as pd\npd.read_csv('file:///etc/passwd')", "network"),
    ("import os\nos.system('id')", "restricted_module"),
    ("import os\nx = os", "restricted_module"),
    ("import io\nio.open('x')", "restricted_module"),
    ("getattr(df, name)", "introspection"),
    ("globals()", "introspection"),
    ("import sys\nsys._getframe()", "import"),
    ("from sklearn.ensemble import RandomForestClassifier\nRandomForestClassifier(n_jobs=-1)", "process"),
    ("match x:\n    case int(__class__=c): pass", "dunder"),
    ("from sklearn.datasets import fetch_openml", "network"),
    ("from os import *", "import"),
])
def test_attacks_are_rejected_with_their_rule(code: str, rule: str) -> None:
    assert rule in rules(code), verify(code, POLICY).feedback()


def test_violation_names_rule_and_line_for_the_llm() -> None:
    verdict = verify("import pandas as pd\n\nx = eval('1')\n", POLICY)
    assert not verdict.ok
    (violation,) = verdict.violations
    assert (violation.rule, violation.line) == ("dynamic_code", 3)
    assert verdict.feedback().startswith("line 3: [dynamic_code] `eval` is not allowed")


def test_checked_source_is_what_ipython_runs() -> None:
    verdict = verify("x = 1\n%time y = 2", POLICY)
    assert "get_ipython().run_line_magic('time'" in verdict.checked_source
    assert not verdict.ok
    assert verify("x = 1", POLICY).checked_source == "x = 1\n"


def test_syntax_error_is_reported_with_line() -> None:
    verdict = verify("x = (\n", POLICY)
    assert [v.rule for v in verdict.violations] == ["syntax"]


def test_plugin_only_mode() -> None:
    policy = Policy(plugin_only=True, plugin_names=("sql_pull_data", "anomaly_detection"))
    assert not verify("import random; random.random()", policy).ok
    assert verify('df, desc = sql_pull_data("select 1", "x.db")', policy).ok
    assert verify("out, d = anomaly_detection(df, 'ts', 'val')\nout", policy).ok
    assert "plugin_only" in rules("df2 = df.head()", policy)
    assert "plugin_only" in rules("for i in range(3): pass", policy)


def test_namespace_guard_only_protects_user_names() -> None:
    policy = Policy(workspace=WS, user_names=frozenset({"df"}))
    verdict = verify("df = df.dropna()", policy)
    assert [v.rule for v in verdict.violations] == ["namespace"]
    assert "choose a new variable name" in verdict.feedback().lower()
    assert verify("clean = df.dropna()", policy).ok
    assert verify("def f():\n    df = 1\n    return df", policy).ok          # a local, not the user's
    assert not verify("def f():\n    global df\n    df = 1", policy).ok
    assert not verify("del df", policy).ok
    assert not verify("[df := 1]", policy).ok


def test_namespace_guard_refuses_in_place_changes_of_user_data() -> None:
    policy = Policy(workspace=WS, user_names=frozenset({"df"}))
    for code in ("df['total'] = df['a'] + 1", "df.loc[0, 'a'] = 2", "df.attrs['x'] = 1", "del df['a']",
                 "df['a'] += 1", "df.dropna(inplace=True)", "df.a.fillna(0, inplace=True)"):
        verdict = verify(code, policy)
        assert [v.rule for v in verdict.violations] == ["namespace"], code
        assert "work on a copy" in verdict.feedback().lower(), code
    for code in ("d2 = df.copy()\nd2['total'] = 1", "df.dropna(inplace=False)", "print(df['a'].sum())",
                 "other = {}\nother['k'] = df['a'].sum()"):
        assert verify(code, policy).ok, code


def test_blocked_functions_from_config() -> None:
    policy = Policy(blocked_functions=("to_excel",))
    assert "blocked_function" in rules("df.to_excel('x.xlsx')", policy)


def test_allowlist_is_configurable() -> None:
    assert "import" in rules("import requests")
    assert verify("import requests", Policy(allowed_modules=("requests",))).ok
