"""Shared fixtures for the end-to-end tests.

- ``ManagedProcess`` starts a long-running binary, waits for the line that says it is
  ready, keeps draining its output (so it never blocks on a full pipe) and stops it with
  SIGTERM. Reuse it for Envoy and the judge service.
- ``fake_provider`` (session scope) runs the real ``sluice-fake-provider`` binary on a free
  port and yields a ``FakeProvider`` with ``.url`` and helpers; ``fake`` is the same object
  reset (recorded requests and stored reply cleared) before each test.

The binary is found via env ``SLUICE_FAKE_PROVIDER``, else
``$CARGO_TARGET_DIR/debug/sluice-fake-provider``, else ``<repo>/target/debug/...``.
Build it first with ``cargo build -p sluice-fake-provider``.
"""

from __future__ import annotations

import collections
import os
import pathlib
import queue
import re
import signal
import subprocess
import threading

import pytest
import requests

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30


def cargo_binary(name: str, env_var: str) -> pathlib.Path:
    """Path of a workspace binary: ``env_var`` if set, else the debug build."""
    explicit = os.environ.get(env_var)
    if explicit:
        return pathlib.Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR")
    candidates = [pathlib.Path(target) / "debug" / name] if target else []
    candidates.append(REPO_ROOT / "target" / "debug" / name)
    for path in candidates:
        if path.exists():
            return path
    return candidates[0]


class ManagedProcess:
    """A child process that is ready once a line of its output matches ``ready``."""

    def __init__(self, argv, ready: str, name: str | None = None, env=None, cwd=None):
        self.argv = [str(a) for a in argv]
        self.ready = re.compile(ready)
        self.name = name or pathlib.Path(self.argv[0]).name
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=500)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._waiting = True

    def start(self, timeout: float = START_TIMEOUT_S) -> re.Match:
        """Starts the process and returns the match of the ready line."""
        if not pathlib.Path(self.argv[0]).exists():
            pytest.fail(f"{self.name}: binary {self.argv[0]} not found (build it first)")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=self.env,
            cwd=self.cwd,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            while True:
                line = self._queue.get(timeout=timeout)
                if line is None:
                    self.stop()
                    pytest.fail(f"{self.name} exited before it was ready:\n{self.output()}")
                match = self.ready.search(line)
                if match:
                    self._waiting = False
                    return match
        except queue.Empty:
            self.stop()
            pytest.fail(f"{self.name} not ready within {timeout}s:\n{self.output()}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if self._waiting:
                self._queue.put(line)
        self._queue.put(None)

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class FakeProvider:
    """Handle on a running fake provider (see tests/fake-provider/src/main.rs)."""

    def __init__(self, process: ManagedProcess, addr: str):
        self.process = process
        self.addr = addr
        self.url = f"http://{addr}"

    def requests(self) -> list[dict]:
        """Requests received so far (oldest first), as recorded by the fake provider."""
        r = requests.get(f"{self.url}/_fake/requests", timeout=10)
        r.raise_for_status()
        return r.json()

    def last_request(self) -> dict:
        got = self.requests()
        assert got, "the fake provider received no request"
        return got[-1]

    def clear(self) -> None:
        """Forgets the recorded requests."""
        requests.delete(f"{self.url}/_fake/requests", timeout=10).raise_for_status()

    def set_reply(self, text: str) -> None:
        """Every later answer uses ``text`` (unless a request sends ``x-fake-reply``)."""
        r = requests.put(f"{self.url}/_fake/reply", data=text.encode("utf-8"), timeout=10)
        r.raise_for_status()

    def clear_reply(self) -> None:
        requests.delete(f"{self.url}/_fake/reply", timeout=10).raise_for_status()

    def reset(self) -> None:
        self.clear()
        self.clear_reply()


def start_fake_provider(listen: str = "127.0.0.1:0") -> FakeProvider:
    binary = cargo_binary("sluice-fake-provider", "SLUICE_FAKE_PROVIDER")
    process = ManagedProcess([binary, "--listen", listen], ready=r"^listening on (\S+)")
    match = process.start()
    return FakeProvider(process, match.group(1))


@pytest.fixture(scope="session")
def fake_provider():
    provider = start_fake_provider()
    try:
        yield provider
    finally:
        provider.process.stop()


@pytest.fixture
def fake_provider_factory():
    """Starts extra fake providers (``factory(listen="127.0.0.1:0")``); stops them after
    the test."""
    started: list[FakeProvider] = []

    def factory(listen: str = "127.0.0.1:0") -> FakeProvider:
        provider = start_fake_provider(listen)
        started.append(provider)
        return provider

    yield factory
    for provider in started:
        provider.process.stop()


@pytest.fixture
def fake(fake_provider):
    """The session's fake provider with no recorded requests and no stored reply."""
    fake_provider.reset()
    yield fake_provider
    fake_provider.reset()


class Judge:
    """Handle on a running ``sluice-judge serve`` (real gRPC on loopback)."""

    def __init__(self, process: ManagedProcess, addr: str, metrics_addr: str):
        self.process = process
        self.addr = addr
        self.port = int(addr.rsplit(":", 1)[1])
        self.metrics_url = f"http://{metrics_addr}/metrics"

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples (all label sets)."""
        text = requests.get(self.metrics_url, timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total


def judge_binary() -> pathlib.Path:
    explicit = os.environ.get("SLUICE_JUDGE")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    return target / "release" / "sluice-judge"


def start_judge(listen: str = "127.0.0.1:0") -> Judge:
    process = ManagedProcess(
        [judge_binary(), "serve", "--listen", listen, "--metrics-listen", "127.0.0.1:0"],
        ready=r"^metrics on (\S+)",
        name="sluice-judge",
    )
    metrics = process.start()
    grpc = next(m.group(1) for m in map(re.compile(r"^listening on (\S+)").match, process.lines) if m)
    return Judge(process, grpc, metrics.group(1))


@pytest.fixture(scope="session")
def judge():
    """The judge service with its embedded classifier, shared by the session."""
    service = start_judge()
    try:
        yield service
    finally:
        service.process.stop()
