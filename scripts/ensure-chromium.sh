#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed: the dashboard's browser tests drive it with Playwright.
set -euo pipefail
CHROMIUM=${SHIPSCOPE_TEST_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Chromium is missing at $CHROMIUM; installing Debian's chromium package" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "Chromium is not installed at $CHROMIUM, and the dashboard tests need it." >&2
  echo "Install it with: apt-get update && apt-get install -y chromium (as root)" >&2
  exit 1
fi
