"""Map top-level data folders into the wheel, but only those that exist.

``plugins/`` -> ``taskweaver_lab/builtin_plugins`` and ``sample_data/`` ->
``taskweaver_lab/sample_data``. A static ``force-include`` would fail the build
while a folder is missing. Editable installs skip this: the package then reads
the folders from the repository itself.
"""
from __future__ import annotations

from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

DATA_FOLDERS = {"plugins": "taskweaver_lab/builtin_plugins", "sample_data": "taskweaver_lab/sample_data"}


class DataFoldersHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        root = Path(self.root)
        for source, target in DATA_FOLDERS.items():
            if (root / source).is_dir() and any((root / source).iterdir()):
                build_data["force_include"][source] = target
