#!/usr/bin/env bash
# Installs ONNX Runtime for the judge's encoder: PyPI's onnxruntime wheel carries
# libonnxruntime.so, which the judge loads at run time (the `ort` crate's load-dynamic), so no
# C++ build and no download at build time.
set -euo pipefail
cd "$(dirname "$0")/../.."

if python3 -c 'import importlib.metadata as m; assert m.version("onnxruntime") == "1.32.0"' 2>/dev/null; then
    exit 0
fi
printf 'setup: installing ONNX Runtime for the judge (pip)\n'
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r judge-service/requirements.txt
