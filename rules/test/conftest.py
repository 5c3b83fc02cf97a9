"""Fixtures for the detection-rule tests: the end-to-end fixtures (fake provider, Envoy harness)
come from tests/e2e, loaded here under another module name so both suites can run together."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_spec = importlib.util.spec_from_file_location("sluice_e2e_conftest", REPO / "tests" / "e2e" / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

fake_provider = e2e.fake_provider
