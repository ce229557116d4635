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
  if ! bash "$tool" start "${LOCAL_LLM_PORT:-8013}"; then
    # Seen on this project's VMs: the tool's -march=native build dies with SIGILL (the CPU advertises AMX
    # the VM does not grant). A portable AVX2 build in the tool's own build folder works; the tool reuses it.
    step "the local model did not start; rebuilding llama-server for a portable x86-64 (AVX2) CPU"
    portable_llama_build
    bash "$tool" start "${LOCAL_LLM_PORT:-8013}" || die "the local model did not start; see ${LOCAL_LLM_HOME:-/tmp/local-llm}/server-*.log"
  fi
  export OPENAI_BASE_URL="http://127.0.0.1:${LOCAL_LLM_PORT:-8013}/v1"
  export OPENAI_API_KEY="${OPENAI_API_KEY:-local}"
  LAB_ARGS+=("--TaskWeaverLab.model=local-coder")
}

portable_llama_build() {
  local home=${LOCAL_LLM_HOME:-/tmp/local-llm} src
  src=$(ls -d "$home"/src/llama_cpp_python-*/vendor/llama.cpp 2>/dev/null | head -1)
  [ -n "$src" ] || die "no llama.cpp sources under $home/src (the first local-llm.sh run fetches them)"
  rm -rf "$home/build"
  cmake -S "$src" -B "$home/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON \
    -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >"$home/build.log" 2>&1 \
    && cmake --build "$home/build" --target llama-server -j 2 >>"$home/build.log" 2>&1 \
    || die "the portable llama-server build failed; see $home/build.log"
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
