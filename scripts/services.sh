#!/usr/bin/env bash
# Installs the system services and programs the deployment tests start themselves: Redis (the
# Celery broker of tests/deployment/test_celery_deployment.py) and Chromium with its driver (the browser that
# tests/deployment/test_dify_hitl_browser.py drives through Playwright at /usr/bin/chromium; Playwright's own
# browser download is not needed). Idempotent: does nothing when they are already installed.
# Nothing is started here; each test starts its own throwaway instance on a free port.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo -n"
else
  SUDO=
fi
echo "==> installing ${missing[*]} (Debian packages)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's package starts a system-wide redis-server on port 6379; the tests need none.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
