# Sourced by scripts/test.sh and scripts/start.sh: installs the extension from this checkout.
# EXTRAS selects pip extras (e.g. "[test]"). Every step fails loudly.
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

install_extension() {
  local extras=${1:-}
  command -v node >/dev/null || die "node (>=20) is required to build the labextension"
  step "pip install jupyterlab (provides jlpm, needed before the frontend build)"
  python -m pip install -q "jupyterlab>=4.0.0,<5" "hatch-jupyter-builder>=0.5" hatchling hatch-nodejs-version \
    || die "pip install jupyterlab failed"
  step "jlpm install (frontend dependencies, yarn.lock is authoritative)"
  jlpm install --immutable || die "jlpm install failed"
  step "remove a previous development install (a labextension symlink into another checkout breaks pip)"
  local linked
  linked="$(python -c 'import sys; print(sys.prefix)')/share/jupyter/labextensions/taskweaver_lab"
  if [ -L "$linked" ]; then rm -f "$linked"; fi
  if python -m pip show -q taskweaver_lab >/dev/null 2>&1; then
    python -m pip uninstall -y -q taskweaver_lab || die "pip uninstall of the previous taskweaver_lab failed"
  fi
  step "pip install -e .${extras}"
  python -m pip install -q -e ".${extras}" || die "pip install -e .${extras} failed"
  step "jlpm build + jupyter labextension develop"
  jlpm build || die "jlpm build failed"
  jupyter labextension develop . --overwrite >/dev/null || die "jupyter labextension develop failed"
  check_installed
}

check_installed() {
  python -c "import taskweaver_lab, jupyterlab, jupyter_server, ipykernel, openai" \
    || die "python imports failed after install"
  local listing
  listing=$(jupyter labextension list 2>&1)
  echo "$listing" | grep taskweaver_lab >/dev/null || die "labextension taskweaver_lab not listed"
  listing=$(jupyter server extension list 2>&1)
  echo "$listing" | grep "taskweaver_lab.*OK" >/dev/null || die "server extension taskweaver_lab not OK"
}
