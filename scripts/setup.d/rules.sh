#!/usr/bin/env bash
# Installs what the detection rules need: Elasticsearch's ES|QL grammar as a Python parser (PyPI
# esql-parser), used by `make rules` to check the queries and by `make test-rules` to run them.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Quick when the pinned versions (rules/requirements.txt) are there.
if python3 - 2>/dev/null <<'PY'
import importlib.metadata as m
assert m.version("esql-parser") == "9.1.3" and m.version("antlr4-python3-runtime") == "4.13.1"
PY
then
    exit 0
fi
printf 'setup: installing the ES|QL parser (pip)\n'
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r rules/requirements.txt
