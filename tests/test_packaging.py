"""A non-editable wheel gives the server extension, the prebuilt labextension and the built-in plugins."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_wheel_install_lists_both_extensions_and_the_builtin_plugins(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"))
    wheel = next((tmp_path / "dist").glob("taskweaver_lab-*.whl"))
    venv = tmp_path / "venv"
    # system site-packages give the dependencies; the venv's own prefix holds only our wheel
    run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    python = venv / "bin" / "python"
    run(str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel))
    server = run(str(python), "-m", "jupyter", "server", "extension", "list", cwd=tmp_path)
    lab = run(str(python), "-m", "jupyter", "labextension", "list", cwd=tmp_path)
    assert str(venv) in run(str(python), "-c", "import taskweaver_lab; print(taskweaver_lab.__file__)", cwd=tmp_path)
    assert any("taskweaver_lab" in line and "OK" in line for line in server.splitlines()), server
    assert any(line.strip().startswith("taskweaver_lab") and "OK" in line for line in lab.splitlines()), lab
    listing = run(str(python), "-c", "from taskweaver_lab.plugins import load_plugins; "
                  "specs, errors = load_plugins([]); print(sorted(s.name for s in specs), errors)", cwd=tmp_path)
    assert "['anomaly_detection', 'sql_pull_data'] []" in listing
