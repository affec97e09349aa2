#!/usr/bin/env bash
# Usage: ensure-apt.sh COMMAND PACKAGE
# Installs PACKAGE from the distribution's packages when COMMAND is not on PATH.
set -euo pipefail
command_name=$1
package=$2
if command -v "$command_name" >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$command_name is missing and this system has no apt-get: install $package so that '$command_name' is on PATH, then run make again" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "$command_name is missing: run 'apt-get install -y --no-install-recommends $package' as root, then make again" >&2
  exit 1
fi
echo "installing $package (apt-get install -y --no-install-recommends $package)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package" >/dev/null
command -v "$command_name" >/dev/null
