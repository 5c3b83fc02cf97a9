#!/usr/bin/env bash
# Installs the offline Istio manifest validator's npm packages into istio/validate/node_modules
# (git-ignored), and skopeo. Quick when they are already there; also needs kubectl.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir=istio/validate
stamp=$dir/node_modules/.sluice-installed
if [ -f "$stamp" ] && [ "$stamp" -nt "$dir/package-lock.json" ] && command -v skopeo >/dev/null; then
    exit 0
fi
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# skopeo: an independent OCI implementation that reads and copies the image in `make test-istio`.
command -v skopeo >/dev/null || missing+=(skopeo)
if ((${#missing[@]})); then
    printf 'setup: installing %s with apt\n' "${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v kubectl >/dev/null || printf 'setup: warning: kubectl not found; make test-istio renders istio/ with it\n' >&2
printf 'setup: installing the Istio manifest validator (npm)\n'
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
touch "$stamp"
