#!/usr/bin/env bash
# THE test command: installs everything on a fresh machine, then runs pytest and the galata UI tests.
#   bash scripts/test.sh            # everything
#   SKIP_UI_TESTS=1 bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_install.sh

ensure_chromium() {
  command -v chromium >/dev/null && return 0
  step "apt-get install chromium (Debian's; Playwright must not download a browser)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium || die "apt-get install chromium failed"
}

run_pytest() {
  step "pytest"
  local rc=0
  python -m pytest -q || rc=$?
  [ "$rc" -eq 5 ] && { echo "pytest collected no tests"; return 0; }
  return "$rc"
}

run_js_tests() {
  step "front-end unit tests (jlpm test: tsc + node --test over lib/tests)"
  jlpm test
}

run_ui_tests() {
  [ "${SKIP_UI_TESTS:-0}" = "1" ] && { echo "UI tests skipped (SKIP_UI_TESTS=1)"; return 0; }
  ensure_chromium
  step "npm ci (ui-tests)"
  (cd ui-tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) || die "npm ci in ui-tests failed"
  step "galata UI tests (Chromium at $(command -v chromium))"
  (cd ui-tests && npx playwright test)
}

install_extension "[test]"
status=0
run_pytest || status=$?
run_js_tests || status=$?
run_ui_tests || status=$?
exit "$status"
