#!/usr/bin/env python3
"""Whole-stack benchmark on loopback: wrk POSTs a 2 KB chat request through Envoy without the
filter, with two floor filters (a wasm filter doing nothing, and one that only buffers both bodies
into the VM: the least any filter that can block or redact must do), with the filter and every
detector off, and with the shipped detectors on. All variants run in the same invocation,
interleaved, and are reported as ratios to Envoy without the filter, with Envoy's CPU time per
request (steadier than req/s when the cores are shared).
Bounded: each run lasts BENCH_SECONDS (default 5) and there are BENCH_ROUNDS (default 3) rounds.

  --only VARIANT              run only some variants
  --wasm main=/tmp/main.wasm  also run the filter variants with another build, same rounds
  --hold VARIANT              one variant under load for BENCH_SECONDS; prints Envoy's pid for perf
"""

import argparse
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


def cpu_ns(pid: int) -> int:
    """CPU time all of a process's threads have used, in nanoseconds (Linux schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


def wrk(url: str, body_file: Path, pid=None) -> dict:
    """One wrk run; with `pid`, also Envoy's CPU time per request (`cpu_us`), which depends far
    less than req/s on what else the shared cores are doing."""
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
        f'local f = io.open("{body_file}")\nwrk.body = f:read("*a")\nf:close()\n')
    cpu_before = cpu_ns(pid) if pid else 0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True).stdout
    cpu = cpu_ns(pid) - cpu_before if pid else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError(f"errors during the run:\n{out}")

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]

    return {"rps": rps, "p50": pct(50), "p99": pct(99), "cpu_us": cpu / 1e3 / max(requests_done, 1)}


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


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="VARIANT",
                    help="run only this variant (repeatable; default: all)")
    ap.add_argument("--wasm", action="append", metavar="LABEL=FILE", default=[],
                    help="also run every filter variant with this .wasm (e.g. main's build as "
                         "`main=/path/main.wasm`), interleaved in the same rounds, reported as "
                         "`VARIANT [LABEL]` (repeatable)")
    ap.add_argument("--no-stream", action="store_true", help="skip the streamed-answer table")
    ap.add_argument("--hold", metavar="VARIANT",
                    help="start Envoy with this variant only, print its pid, drive wrk for BENCH_SECONDS "
                         "and stop (attach `perf record -p PID` meanwhile)")
    return ap.parse_args()


def variant_table(judge_port, target: Path) -> dict:
    no_judge = shipped_plugin_config()
    no_judge.pop("judge", None)
    detectors_off = dict(no_judge)
    detectors_off["detectors"] = {name: {"action": "off"} for name in no_judge["detectors"]}
    # The cheapest wasm filters (tests/floor-filter): what any proxy-wasm filter costs here.
    floor = target / "wasm32-wasip1" / "release" / "sluice_floor_filter.wasm"
    return {
        "envoy, no filter": dict(with_filter=False),
        "floor: wasm filter, does nothing": dict(plugin_config={"floor": "noop"}, wasm=floor),
        "floor: wasm filter, buffers bodies": dict(plugin_config={"floor": "buffer"}, wasm=floor),
        "filter, detectors off": dict(plugin_config=detectors_off),
        "filter, detectors on": dict(plugin_config=no_judge),
        "filter + judge (shipped)": dict(plugin_config=shipped_plugin_config(), judge_port=judge_port),
    }


def start_envoy(port: int, kwargs: dict) -> Envoy:
    """Starts Envoy for one variant; `wasm` in kwargs picks the module (else the harness's)."""
    kwargs = dict(kwargs)
    wasm = kwargs.pop("wasm", None)
    saved = os.environ.get("SLUICE_WASM")
    if wasm:
        os.environ["SLUICE_WASM"] = str(wasm)
    try:
        return Envoy(port, **kwargs).start()
    finally:
        if wasm and saved is None:
            os.environ.pop("SLUICE_WASM", None)
        elif wasm:
            os.environ["SLUICE_WASM"] = saved


def main():
    args = parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    port = free_port()
    provider = subprocess.Popen([str(target / "release" / "sluice-fake-provider"), "--listen", f"127.0.0.1:{port}"],
                                stdout=subprocess.PIPE, text=True)
    provider.stdout.readline()
    wanted = [args.hold] if args.hold else args.only
    # The judge binary is only needed (and only has to be built) for the variants that call it.
    judge = judge_port = None
    if wanted is None or any("judge" in w for w in wanted):
        judge = subprocess.Popen([str(target / "release" / "sluice-judge"), "serve", "--listen", "127.0.0.1:0",
                                  "--metrics-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        judge_port = int(judge.stdout.readline().strip().rsplit(":", 1)[1])
    table = variant_table(judge_port, target)
    if wanted:
        unknown = [w for w in wanted if w not in table]
        if unknown:
            sys.exit(f"unknown variant(s) {unknown}; known: {list(table)}")
        table = {name: table[name] for name in wanted}
    variants = {}
    for name, kwargs in table.items():
        variants[name] = kwargs
        if "wasm" in kwargs and not kwargs["wasm"].is_file():
            sys.exit(f"{kwargs['wasm']} is missing: `cargo build --release --target wasm32-wasip1 "
                     "-p sluice-floor-filter` builds it (scripts/bench.sh does)")
        if not kwargs.get("with_filter", True) or "wasm" in kwargs:
            continue
        for spec in args.wasm:
            label, sep, file = spec.partition("=")
            if not sep or not Path(file).is_file():
                sys.exit(f"--wasm {spec}: expected LABEL=FILE naming an existing file")
            variants[f"{name} [{label}]"] = dict(kwargs, wasm=Path(file).resolve())
    results = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(chat_body())
        try:
            if args.hold:
                envoy = start_envoy(port, variants[args.hold])
                try:
                    print(f"envoy pid {envoy.proc.pid}", flush=True)
                    print(wrk(f"{envoy.url}/v1/chat/completions", body, envoy.proc.pid), flush=True)
                finally:
                    envoy.stop()
                return
            for _ in range(ROUNDS):
                for name, kwargs in variants.items():
                    envoy = start_envoy(port, kwargs)
                    try:
                        wrk(f"{envoy.url}/v1/chat/completions", body)  # warm-up, discarded
                        results[name].append(wrk(f"{envoy.url}/v1/chat/completions", body, envoy.proc.pid))
                    finally:
                        envoy.stop()
            report(results)
            if not args.no_stream and judge_port is not None:
                stream_bench(port, judge_port)
        finally:
            provider.terminate()
            if judge:
                judge.terminate()


def report(results: dict) -> None:
    base_runs = results.get("envoy, no filter")
    base = statistics.median(r["rps"] for r in base_runs) if base_runs else None
    print(f"\n2 KB chat POST, wrk -c{CONNECTIONS} {SECONDS}s x {ROUNDS} rounds, Envoy --concurrency 1 (medians)")
    print("cpu us: Envoy's CPU time per request (all threads); rounds: each round's ratio to the same")
    print("round's Envoy alone, to show how much the shared machine moved the figures")
    print(f"{'variant':<36}{'req/s':>8}{'ratio':>7}{'p50 us':>8}{'p99 us':>8}{'cpu us':>8}   rounds")
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        cpu = statistics.median(r["cpu_us"] for r in runs)
        ratio = f"{rps / base:>7.2f}" if base else f"{'-':>7}"
        rounds = ""
        if base_runs:
            rounds = " ".join(f"{r['rps'] / b['rps']:.2f}" for r, b in zip(runs, base_runs))
        print(f"{name:<36}{rps:>8.0f}{ratio}{p50:>8.0f}{p99:>8.0f}{cpu:>8.1f}   {rounds}")


if __name__ == "__main__":
    main()
