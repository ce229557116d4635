#!/usr/bin/env bash
# Install taskweaver_lab from this checkout and start JupyterLab with the TaskWeaver sidebar.
#   bash scripts/start.sh [extra jupyter lab args]
# LLM endpoint: export OPENAI_BASE_URL / OPENAI_API_KEY (and optionally pass
#   --TaskWeaverLab.planner_model=... --TaskWeaverLab.code_generator_model=...),
# or TASKWEAVER_LOCAL_LLM=1 to serve a small local model with ../shared/tools/local-llm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_install.sh

start_local_llm() {
  local tool=../shared/tools/local-llm.sh
  [ -x "$tool" ] || [ -f "$tool" ] || die "TASKWEAVER_LOCAL_LLM=1 but $tool is missing"
  step "starting the local model (first run builds llama-server, ~8 min)"
  bash "$tool" start "${LOCAL_LLM_PORT:-8013}"
  export OPENAI_BASE_URL="http://127.0.0.1:${LOCAL_LLM_PORT:-8013}/v1"
  export OPENAI_API_KEY="${OPENAI_API_KEY:-local}"
  LAB_ARGS+=("--TaskWeaverLab.model=local-coder")
}

explain_llm_setup() {
  if [ -n "${OPENAI_BASE_URL:-}" ]; then
    echo "LLM endpoint: $OPENAI_BASE_URL"
    return
  fi
  cat <<'MSG'
No LLM endpoint configured yet. Either
  export OPENAI_BASE_URL=https://your-endpoint/v1 OPENAI_API_KEY=...   (then re-run), or
  jupyter lab --TaskWeaverLab.base_url=... --TaskWeaverLab.model=...,   or
  TASKWEAVER_LOCAL_LLM=1 bash scripts/start.sh   (a small local model, offline).
The sidebar shows the same instructions until an endpoint is set.
MSG
}

LAB_ARGS=()
install_extension ""
[ "${TASKWEAVER_LOCAL_LLM:-0}" = "1" ] && start_local_llm
explain_llm_setup
[ "$(id -u)" -eq 0 ] && LAB_ARGS+=("--allow-root")
step "jupyter lab"
exec jupyter lab "${LAB_ARGS[@]}" "$@"
