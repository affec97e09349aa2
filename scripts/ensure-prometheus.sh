#!/usr/bin/env bash
# Installs Prometheus from the distribution's packages when it is missing.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "prometheus is missing and this system has no apt-get: install Prometheus 2.x so that 'prometheus' is on PATH, then run make again" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "prometheus is missing: run 'apt-get install -y --no-install-recommends prometheus' as root, then make again" >&2
  exit 1
fi
echo "installing prometheus (apt-get install -y --no-install-recommends prometheus)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null
