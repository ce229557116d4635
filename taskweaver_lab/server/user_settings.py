"""The user's own choices from Settings > TaskWeaver, for turns that do not come from the browser.

The sidebar sends these choices with each turn. A ``%%taskweaver`` turn comes from the kernel, which
never sees them: the server reads the same saved settings file JupyterLab writes (in the user-settings
directory, ``$JUPYTERLAB_SETTINGS_DIR`` or ``<jupyter config dir>/lab/user-settings``), so both ways in use
the user's model names and endpoint. The admin's limits apply to them as to the sidebar's
(``handlers.choices_field``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import json5
from jupyterlab.commands import get_user_settings_dir

log = logging.getLogger("taskweaver_lab.server")

SETTINGS_FILE = Path("taskweaver_lab") / "plugin.jupyterlab-settings"
# Settings Editor names -> the turn's override names (schema/plugin.json)
FIELDS = {"plannerModel": "planner_model", "codeGeneratorModel": "code_generator_model", "baseUrl": "base_url"}


def saved_overrides(settings_dir: str | None = None) -> dict[str, Any]:
    """The non-empty model names and endpoint the user saved, as turn ``overrides``; {} when none (or unreadable:
    logged, the server's own configuration applies)."""
    path = Path(settings_dir or get_user_settings_dir()) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        saved = json5.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("taskweaver_lab: cannot read the user's settings %s (%s); %%%%taskweaver turns use the server's "
                    "configuration", path, error)
        return {}
    if not isinstance(saved, dict):
        return {}
    return {name: saved[key] for key, name in FIELDS.items() if isinstance(saved.get(key), str) and saved[key].strip()}
