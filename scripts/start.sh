#!/usr/bin/env bash
# Install taskweaver_lab from this checkout (once; again only when the checkout changes) and start JupyterLab with
# the TaskWeaver sidebar.
#   bash scripts/start.sh [extra jupyter lab args]      e.g. --port 8890 --TaskWeaverLab.model=gpt-4o
# LLM endpoint: OPENAI_BASE_URL / OPENAI_API_KEY, --TaskWeaverLab.base_url=... among the arguments, or a Jupyter
# config file. With none of these, the product's own offline model is started
# (`jupyter taskweaver local-model start`) and Lab is pointed at it.
#   TASKWEAVER_LOCAL_MODEL=0       never start the local model;  =1  start it even when an endpoint is configured
#   TASKWEAVER_LOCAL_MODEL_PORT    its port (default 8013)
#   TASKWEAVER_REINSTALL=1         reinstall even though this checkout is already installed;  =0  never install
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_install.sh

check_node() {
  local version major
  version=$(node --version 2>/dev/null) || die "Node.js >= 20 is needed to build the front end: install it (https://nodejs.org, or nvm install 20), then re-run"
  major=${version#v}
  major=${major%%.*}
  [ "$major" -ge 20 ] 2>/dev/null || die "Node.js >= 20 is needed to build the front end, found $version: install a newer one (nvm install 20), then re-run"
}

sha_of_stdin() { python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'; }

# What the install depends on: this checkout, its commit, the packaging files, uncommitted front-end changes.
# (The Python package is installed editable: its source changes need no reinstall.)
install_stamp() {
  {
    pwd -P
    git rev-parse HEAD 2>/dev/null || echo "not a git checkout"
    cat pyproject.toml package.json yarn.lock 2>/dev/null
    git diff HEAD -- src style schema 2>/dev/null || true
    git ls-files --others --exclude-standard -- src style schema 2>/dev/null || true
  } | sha_of_stdin
}

installed_here() {
  local where prefix
  where=$(python -c 'import os, taskweaver_lab; print(os.path.dirname(os.path.realpath(taskweaver_lab.__file__)))' \
    2>/dev/null) || return 1
  [ "$where" = "$(pwd -P)/taskweaver_lab" ] || return 1
  prefix=$(python -c 'import sys; print(sys.prefix)')
  [ -f "$prefix/share/jupyter/labextensions/taskweaver_lab/package.json" ]
}

ensure_installed() {
  local stamp_file
  stamp_file="$(python -c 'import sys; print(sys.prefix)')/share/taskweaver_lab/install-stamp"
  if [ "${TASKWEAVER_REINSTALL:-}" = "0" ]; then
    installed_here || die "TASKWEAVER_REINSTALL=0 but taskweaver_lab is not installed from this checkout: run without it"
    return
  fi
  if [ "${TASKWEAVER_REINSTALL:-0}" != "1" ] && [ -f "$stamp_file" ] && installed_here \
     && [ "$(cat "$stamp_file")" = "$(install_stamp)" ]; then
    step "taskweaver_lab is installed from this checkout (TASKWEAVER_REINSTALL=1 reinstalls)"
    return
  fi
  check_node
  install_extension ""
  mkdir -p "$(dirname "$stamp_file")"
  install_stamp >"$stamp_file"
}

explain_llm_setup() {
  cat <<'MSG'
No LLM endpoint configured (TASKWEAVER_LOCAL_MODEL=0). Either
  export OPENAI_BASE_URL=https://your-endpoint/v1 OPENAI_API_KEY=...   (then re-run), or
  bash scripts/start.sh --TaskWeaverLab.base_url=... --TaskWeaverLab.model=...,   or
  bash scripts/start.sh   without TASKWEAVER_LOCAL_MODEL=0 (the product's own offline model).
The sidebar shows the same instructions until an endpoint is set.
MSG
}

explain_local_model() {
  cat <<MSG
No LLM endpoint is configured (no OPENAI_BASE_URL / OPENAI_API_KEY, no TaskWeaverLab.base_url), so the product's
own offline model is started: Qwen2.5-Coder-1.5B-Instruct served by llama.cpp on http://127.0.0.1:$1/v1 as
model local-coder. The first start builds llama.cpp and downloads 1.1 GB into your cache dir, once; a small model
on a CPU is slow and makes more mistakes than a hosted one.
To use a hosted model instead: export OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... (any
OpenAI-compatible endpoint) and re-run; TASKWEAVER_LOCAL_MODEL=0 starts Lab without a model.
The local model keeps running after Lab stops: jupyter taskweaver local-model stop --port $1
MSG
}

# Decide the endpoint; start the local model when none is configured (or TASKWEAVER_LOCAL_MODEL=1).
choose_llm() {
  local port=${TASKWEAVER_LOCAL_MODEL_PORT:-8013} mode=${TASKWEAVER_LOCAL_MODEL:-${TASKWEAVER_LOCAL_LLM:-auto}} where rc
  case "$mode" in
    0|no|off|false) explain_llm_setup; return ;;
    1|yes|on|true) step "starting the local model (TASKWEAVER_LOCAL_MODEL=$mode)" ;;
    *)
      rc=0
      where=$(python -m taskweaver_lab.local_model endpoint "$@") || rc=$?
      if [ "$rc" -eq 0 ]; then
        echo "LLM endpoint: configured in $where"
        return
      fi
      [ "$rc" -eq 1 ] || die "could not read the TaskWeaverLab settings (see above)"
      step "starting the local model"
      explain_local_model "$port" ;;
  esac
  jupyter taskweaver local-model start --port "$port" \
    || die "the local model did not start (the reason is above); set OPENAI_BASE_URL / OPENAI_API_KEY for a hosted model, or TASKWEAVER_LOCAL_MODEL=0 to start Lab without one"
  export OPENAI_BASE_URL="http://127.0.0.1:$port/v1"
  export OPENAI_API_KEY=local  # a loopback server: no real key goes to it
  # a small model on a CPU may read a long prompt for minutes before its first token (Stop still ends a turn at once)
  LAB_ARGS+=("--TaskWeaverLab.model=local-coder" "--TaskWeaverLab.llm_deadline=900")
}

LAB_ARGS=()
ensure_installed
choose_llm "$@"
[ "$(id -u)" -eq 0 ] && LAB_ARGS+=("--allow-root")
step "jupyter lab"
exec jupyter lab "${LAB_ARGS[@]}" "$@"
