#!/usr/bin/env bash
# Install a headless browser for the report render test (tests/integration/test_report_chromium.py).
#
# Does nothing when a `chromium` binary is already on PATH. Otherwise, as root, installs Debian's
# `chromium` package (the machine must reach the Debian package mirror). Not root and no chromium:
# prints how to install it and exits non-zero only under CI=true (locally the test then skips).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium found: $(command -v chromium) ($(chromium --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    echo "installing Debian's chromium package (for the report render test)..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
    echo "installed: $(chromium --version)"
    exit 0
fi

message="chromium is not installed and this user is not root: install it with
    sudo apt-get install --no-install-recommends chromium
(the report render test is skipped locally without it, and fails under CI=true)"
if [ "${CI:-}" = "true" ]; then
    echo "error: $message" >&2
    exit 1
fi
echo "warning: $message" >&2
exit 0
