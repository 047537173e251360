#!/usr/bin/env bash
# Makes sure Debian's Prometheus, promtool, Pushgateway and Alertmanager are installed: the exporter, deploy-gate and
# incident tests start their own servers on loopback ports.
set -euo pipefail
NEEDED=(prometheus promtool prometheus-pushgateway prometheus-alertmanager)
PACKAGES=(prometheus prometheus-pushgateway prometheus-alertmanager)

missing() {
  for name in "${NEEDED[@]}"; do command -v "$name" >/dev/null || return 0; done
  return 1
}

if missing && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's ${PACKAGES[*]} for the tests" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi
if missing; then
  echo "Prometheus, promtool, the Pushgateway and Alertmanager are needed by the tests and are not all installed." >&2
  echo "Install them with: apt-get update && apt-get install -y ${PACKAGES[*]} (as root)" >&2
  exit 1
fi
