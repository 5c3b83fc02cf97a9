#!/usr/bin/env bash
# Runs `envoy --mode validate` on every shipped Envoy config. Validation loads the filter and
# runs its on_configure, so a bad plugin configuration fails here too.
set -euo pipefail
cd "$(dirname "$0")/.."
envoy=$(scripts/envoy-bin)
status=0
for config in envoy/*.yaml; do
    if out=$("$envoy" --mode validate -c "$config" --log-level warn 2>&1); then
        echo "ok    $config"
    else
        echo "FAIL  $config"
        echo "$out" | tail -20
        status=1
    fi
done
exit $status
