"""Issue 11's bypass classes whose harm happens AFTER or BESIDE the agent cell, as attack snippets.

Unlike ``attacks.py`` (each snippet must be rejected by the verifier or blocked by the guard), these are
judged by their canaries: the agent's object is evaluated by the kernel helper's report, a callback runs on
a kernel thread or in a later cell, a plugin is handed a path. They run through the real executor (the
verifier bypassed, so the later layers are tested alone) and the canaries must stay intact: no canary text
in what the session sees (summary, outputs, the variables line), nothing written outside the workspace, the
loopback canary never reached. Placeholders as in ``attacks.py``; @LEAK@ is a path inside the workspace
where an escaped callback would drop what it stole; @DB@ a SQLite file outside the workspace.
"""
from __future__ import annotations

EVIL_REPR = "    def __repr__(self):\n        return open('@SECRET@').read()\n"

# Class 1: objects the agent made, evaluated by the kernel helper's report after the cell.
REPORT_WINDOW: list[tuple[str, str]] = [
    ("report_window", "class Leak:\n" + EVIL_REPR + "leak_var = Leak()"),
    ("report_window", "class Leak:\n" + EVIL_REPR + "Leak()"),
    ("report_window", "class Touch:\n    def __getattribute__(self, name):\n        open('@OUTSIDE@/pwned.txt', 'w')\n"
                      "        return object.__getattribute__(self, name)\ntouch_var = Touch()"),
    ("report_window", "class Klass:\n    @property\n    def __class__(self):\n"
                      "        __import__('socket').create_connection(('127.0.0.1', @PORT@))\n        return int\n"
                      "klass_var = Klass()"),
    ("report_window", "class Meta(type):\n    def __getattribute__(cls, name):\n"
                      "        __import__('socket').create_connection(('127.0.0.1', @PORT@))\n"
                      "        return type.__getattribute__(cls, name)\nclass Odd(metaclass=Meta):\n    pass\nodd_var = Odd()"),
    ("report_window", "import pandas as pd\nclass Name:\n" + EVIL_REPR + "series_var = pd.Series([1, 2], name=Name())"),
    ("report_window", "import pandas as pd\nclass Col:\n" + EVIL_REPR + "    def __hash__(self):\n        return 1\n"
                      "frame_var = pd.DataFrame({('a', Col()): [1]})"),
    ("report_window", "import pandas as pd\nclass Cell:\n" + EVIL_REPR + "pd.DataFrame({'v': [Cell()]})"),
    ("report_window", "import os\nimport pandas as pd\npd.set_option('display.float_format', lambda v: "
                      "open(os.path.join(os.path.dirname(os.getcwd()), 'outside', 'secret.txt')).read())\n"
                      "pd.DataFrame({'x': [1.5]})"),
    ("report_window", "class Sneaky(str):\n    def startswith(self, *a):\n        open('@OUTSIDE@/pwned.txt', 'w')\n"
                      "        return False\nglobals()[Sneaky('sneaky_name')] = 1"),
]

# Class 3: callables handed to the kernel's own machinery (IPython events, kernel threads), run later.
LATER_CALLBACKS: list[tuple[str, str]] = [
    ("ipython_callbacks", "get_ipython().events.register('post_run_cell', lambda *a: open('@OUTSIDE@/pwned.txt', 'w'))"),
    ("ipython_callbacks", "get_ipython().events.register('pre_run_cell', lambda *a: "
                          "open('@LEAK@', 'w').write(open('@SECRET@').read()))"),
    ("ipython_callbacks", "import functools, shutil\nget_ipython().events.register('post_execute', "
                          "functools.partial(shutil.copyfile, '@SECRET@', '@LEAK@'))"),
    ("ipython_callbacks", "def later(*a):\n    __import__('socket').create_connection(('127.0.0.1', @PORT@))\n"
                          "get_ipython().events.register('pre_execute', later)"),
    ("kernel_threads", "import functools, shutil\nget_ipython().kernel.control_thread.io_loop.call_later(0.5, "
                       "functools.partial(shutil.copyfile, '@SECRET@', '@LEAK@'))"),
    ("kernel_threads", "import functools, os\nimport sys\nsys.stdout.pub_thread.schedule("
                       "functools.partial(os.system, 'cat @SECRET@ > @LEAK@'))"),
    # the kernel's main event loop runs what was scheduled after the cell is over
    ("event_loop", "import asyncio, functools, shutil\nasyncio.get_event_loop().call_soon("
                   "functools.partial(shutil.copyfile, '@SECRET@', '@LEAK@'))"),
    ("event_loop", "import asyncio, functools, os\nasyncio.get_event_loop().call_later(0.5, "
                   "functools.partial(os.system, 'cat @SECRET@ > @LEAK@'))"),
    ("event_loop", "import asyncio\nasync def later():\n    await asyncio.sleep(0.5)\n"
                   "    data = open('@SECRET@').read()\n    open('@LEAK@', 'w').write(data)\nasyncio.ensure_future(later())"),
    ("event_loop", "import asyncio, functools, shutil, threading\nloop = asyncio.get_event_loop()\n"
                   "threading.Thread(target=lambda: loop.call_soon_threadsafe(functools.partial(shutil.copyfile, "
                   "'@SECRET@', '@LEAK@'))).start()"),
]

# Class 6: the plugin's own path checks (the guard may be off: ``guard=False`` is a setting).
PLUGIN_PATHS: list[tuple[str, str]] = [
    ("plugin_path", "out_a, d_a = sql_pull_data('SELECT * FROM secrets', '@DB@')"),
    ("plugin_path", "out_b, d_b = sql_pull_data('SELECT * FROM secrets', '../elsewhere/secret.db')"),
    ("plugin_path", "out_c, d_c = sql_pull_data('SELECT * FROM secrets', 'file:@DB@?mode=ro')"),
    ("plugin_path", "out_d, d_d = sql_pull_data('SELECT * FROM secrets', 'sqlite:///@DB@')"),
    ("plugin_path", "out_e, d_e = sql_pull_data('SELECT * FROM secrets', "
                    "'sqlite:///file:@DB@?mode=ro&uri=true')"),
    ("plugin_path", "out_f, d_f = sql_pull_data('SELECT * FROM secrets', 'link.db')"),   # a symlink pointing out
]

# Class 7: credentials of other services, planted in the server's env, reached by templates.
CREDENTIALS = {
    "AWS_SECRET_ACCESS_KEY": "awsCanary0123456789abcdefghijklmnopqrstu", "AWS_ACCESS_KEY_ID": "AKIACANARY0123456789",
    "AZURE_CLIENT_SECRET": "azure-canary-secret-5d1e", "GOOGLE_API_KEY": "google-canary-key-77a0",
    "HF_TOKEN": "hf_canaryHuggingFaceToken0123456789ab", "HUGGINGFACEHUB_API_TOKEN": "hub-canary-token-91c2",
    "GITHUB_TOKEN": "github-canary-token-0c3d", "GH_TOKEN": "gh-canary-token-4f5e", "GITLAB_TOKEN": "gitlab-canary-6a7b",
    "ANTHROPIC_API_KEY": "anthropic-canary-8c9d", "MISTRAL_API_KEY": "mistral-canary-0e1f",
    "COHERE_API_KEY": "cohere-canary-2a3b", "GROQ_API_KEY": "groq-canary-4c5d", "TOGETHER_API_KEY": "together-canary-6e7f",
    "STRIPE_SECRET_KEY": "stripe-canary-8a9b", "DATABASE_PASSWORD": "db-password-canary-0c1d",
    "SLACK_BOT_TOKEN": "slack-canary-token-2e3f", "ACME_API_KEY": "acme-canary-key-4a5b",
}
TEMPLATES: list[tuple[str, str]] = [
    ("env_template", "import os\nprint(os.path.expandvars('$AWS_SECRET_ACCESS_KEY $HF_TOKEN ${GITHUB_TOKEN} $GH_TOKEN'))"),
    ("env_template", "import os\nprint(os.path.expandvars(' '.join('$' + n for n in ['ANTHROPIC_API_KEY', "
                     "'MISTRAL_API_KEY', 'COHERE_API_KEY', 'GROQ_API_KEY', 'TOGETHER_API_KEY'])))"),
    ("env_template", "import os\nprint('{0[HF_TOKEN]} {0[DATABASE_PASSWORD]}'.format(dict(os.environ)))"),
    ("env_template", "import os\nprint('%(GITLAB_TOKEN)s %(SLACK_BOT_TOKEN)s' % os.environ)"),
    ("env_template", "import os\nprint(os.environ.get('ACME_API_KEY'), os.getenv('STRIPE_SECRET_KEY'), "
                     "os.environ.get('AZURE_CLIENT_SECRET'))"),
    ("env_template", "import string, os\nprint(string.Template('$GOOGLE_API_KEY $HUGGINGFACEHUB_API_TOKEN')"
                     ".safe_substitute(os.environ))"),
    ("secret_variable", "token_var = 'hf_' + 'Q' * 34\naws_var = 'AKIA' + 'Z' * 16\ngh_var = 'ghp_' + 'x' * 36"),
]
