#!/usr/bin/env python3
"""Whole-stack benchmark on loopback: wrk POSTs a 2 KB chat request through Envoy without the
filter, with the filter and every detector off, and with the shipped detectors on. All variants
run in the same invocation, interleaved, and are reported as ratios to Envoy without the filter.
Bounded: each run lasts BENCH_SECONDS (default 5) and there are BENCH_ROUNDS (default 3) rounds.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from envoy_harness import REPO, Envoy, free_port, shipped_plugin_config  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))


def chat_body(size=2048) -> str:
    filler = ("Please summarise the quarterly report for the team, focusing on revenue, costs and "
              "the hiring plan for next year. ")
    text = (filler * (size // len(filler) + 1))[: size - 120]
    return json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": text}]})


def wrk(url: str, body_file: Path) -> dict:
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
        f'local f = io.open("{body_file}")\nwrk.body = f:read("*a")\nf:close()\n')
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError(f"errors during the run:\n{out}")

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]

    return {"rps": rps, "p50": pct(50), "p99": pct(99)}


STREAM_REQUESTS = int(os.environ.get("BENCH_STREAM_REQUESTS", "40"))


def stream_once(url: str, prompt: str) -> tuple:
    """Time to first answer byte and to the end of a streamed chat answer, in microseconds."""
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    headers = {"x-fake-delta-chars": "4", "x-fake-write-delay-ms": "1"}
    start = time.perf_counter()
    with requests.post(url, json=body, headers=headers, stream=True, timeout=30) as r:
        r.raise_for_status()
        chunks = r.iter_content(chunk_size=None)
        next(chunks)
        first = time.perf_counter()
        for _ in chunks:
            pass
    end = time.perf_counter()
    return (first - start) * 1e6, (end - start) * 1e6


def stream_bench(port: int, judge_port: int) -> None:
    """Streamed answers: without the filter, through it with nothing to restore, and with a
    placeholder to restore in every answer. Sequential requests, medians."""
    story = "Tell me a short story about a lighthouse keeper and the sea, in five sentences."
    # Same length, so both answers stream the same number of deltas.
    plain = story + " Sign it for jane.doe at example."
    with_email = story + " Sign it for jane.doe@example.com."
    cases = [
        ("envoy, no filter", dict(with_filter=False), plain),
        ("filter, pass-through", dict(plugin_config=shipped_plugin_config(), judge_port=judge_port), plain),
        ("filter, restoring", dict(plugin_config=shipped_plugin_config(), judge_port=judge_port), with_email),
    ]
    print(f"\nStreamed chat answers (~{len(plain) + 10} chars in 4-char deltas, 1 ms apart), "
          f"{STREAM_REQUESTS} sequential requests, medians")
    print(f"{'variant':<24}{'TTFB us':>10}{'total us':>10}")
    for name, kwargs, prompt in cases:
        envoy = Envoy(port, **kwargs).start()
        try:
            url = f"{envoy.url}/v1/chat/completions"
            stream_once(url, prompt)  # warm-up
            runs = [stream_once(url, prompt) for _ in range(STREAM_REQUESTS)]
        finally:
            envoy.stop()
        print(f"{name:<24}{statistics.median(r[0] for r in runs):>10.0f}"
              f"{statistics.median(r[1] for r in runs):>10.0f}")


def main():
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    port = free_port()
    provider = subprocess.Popen([str(target / "release" / "sluice-fake-provider"), "--listen", f"127.0.0.1:{port}"],
                                stdout=subprocess.PIPE, text=True)
    provider.stdout.readline()
    judge = subprocess.Popen([str(target / "release" / "sluice-judge"), "serve", "--listen", "127.0.0.1:0",
                              "--metrics-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    judge_port = int(judge.stdout.readline().strip().rsplit(":", 1)[1])
    no_judge = shipped_plugin_config()
    no_judge.pop("judge", None)
    detectors_off = dict(no_judge)
    detectors_off["detectors"] = {name: {"action": "off"} for name in no_judge["detectors"]}
    variants = {
        "envoy, no filter": dict(with_filter=False),
        "filter, detectors off": dict(plugin_config=detectors_off),
        "filter, detectors on": dict(plugin_config=no_judge),
        "filter + judge (shipped)": dict(plugin_config=shipped_plugin_config(), judge_port=judge_port),
    }
    results = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(chat_body())
        try:
            for _ in range(ROUNDS):
                for name, kwargs in variants.items():
                    envoy = Envoy(port, **kwargs).start()
                    try:
                        wrk(f"{envoy.url}/v1/chat/completions", body)  # warm-up, discarded
                        results[name].append(wrk(f"{envoy.url}/v1/chat/completions", body))
                    finally:
                        envoy.stop()
            report(results)
            stream_bench(port, judge_port)
        finally:
            provider.terminate()
            judge.terminate()


def report(results: dict) -> None:
    base = statistics.median(r["rps"] for r in results["envoy, no filter"])
    print(f"\n2 KB chat POST, wrk -c{CONNECTIONS} {SECONDS}s x {ROUNDS} rounds, Envoy --concurrency 1 (medians)")
    print(f"{'variant':<24}{'req/s':>10}{'ratio':>8}{'p50 us':>10}{'p99 us':>10}")
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        print(f"{name:<24}{rps:>10.0f}{rps / base:>8.2f}{p50:>10.0f}{p99:>10.0f}")


if __name__ == "__main__":
    main()
