"""JupyterLab server for the galata tests (see playwright.config.js for the three variants).

Env (set by playwright.config.js):
  TW_UI_LLM_PORT   port of the scripted LLM server the tests start (empty: no endpoint configured)
  TW_UI_RTC        "0" disables real-time collaboration
  TW_UI_BAD_CONFIG "1" sets a bad TaskWeaverLab value: the extension loads degraded (bad-config.spec.ts)
  TW_UI_NO_SERVER_EXTENSION "1": the front end without the server extension, its routes answer 404 HTML pages
"""
import os

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # noqa: F821 (c is injected by traitlets)

c.ServerApp.allow_root = True  # noqa: F821
llm_port = os.environ.get("TW_UI_LLM_PORT", "")
if llm_port:
    c.TaskWeaverLab.base_url = f"http://127.0.0.1:{llm_port}/v1"  # noqa: F821
    c.TaskWeaverLab.api_key = "scripted"  # noqa: F821
    c.TaskWeaverLab.planner_model = "planner"  # noqa: F821
    c.TaskWeaverLab.code_generator_model = "coder"  # noqa: F821
else:
    c.TaskWeaverLab.base_url = ""  # noqa: F821
if os.environ.get("TW_UI_RTC", "1") == "0":
    c.YDocExtension.disable_rtc = True  # noqa: F821
if os.environ.get("TW_UI_STUB") == "1":  # protocol stub for sidebar checks without an LLM (never in CI)
    c.ServerApp.jpserver_extensions.update({"tw_protocol_stub": True, "taskweaver_lab": False})  # noqa: F821
if os.environ.get("TW_UI_BAD_CONFIG") == "1":  # the sidebar must show the config error, not a 404 page
    c.TaskWeaverLab.max_attempts = 0  # noqa: F821
if os.environ.get("TW_UI_NO_SERVER_EXTENSION") == "1":  # the sidebar must explain a 404 page, not show it
    c.ServerApp.jpserver_extensions.update({"taskweaver_lab": False})  # noqa: F821
