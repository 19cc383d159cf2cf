#!/usr/bin/env python3
"""Client overhead: this collection's load generator vs the seed's benchmark method, on one CPU core.

A benchmark client must not be the bottleneck. The seed's ``benchmark-vllm.py`` (seed-workflow.md 3.4) used a
ThreadPoolExecutor with 20 workers and one shared ``requests.Session``, non-streaming. This script serves
completions from a zero-latency local server and drives it from a client process pinned to one core
(os.sched_setaffinity; the server gets another core), first with the seed's method, then with
``plugins/module_utils/inference_load.py`` (asyncio + httptools over keep-alive HTTP/1.1, streaming, so it also
parses every token event), for the same number of requests at the same concurrency (20).

It prints req/s of both and their ratio (target >= 5x), and the client's CPU time per request
(time.process_time over all threads), whose ratio is the client's own cost and does not depend on how fast
the server is or how busy the machine is.

Servers: ``vllm_sim`` (``python -m localcluster.vllm_sim --zero-latency``) or ``stub`` (a minimal asyncio
HTTP/1.1 server in this file that answers from memory; the default). ``auto`` uses vllm_sim when it answers a
probe within 15 s, else the stub. vllm_sim writes each token event separately and costs the server several times
more CPU per request than the stub, so with it req/s shows the server's limit rather than the client's.

    .venv/bin/python benchmarks/client_overhead.py [--requests 3000] [--rounds 3] [--server auto|vllm_sim|stub]
"""
import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
sys.path.insert(0, ROOT)

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_load  # noqa: E402

MODEL = "bench-model"
PROMPT = "Explain quantum computing in one sentence:"  # the seed's benchmark prompt
MAX_TOKENS = 16
CONCURRENCY = 20  # the seed's "Heavy" scenario


# --- minimal zero-latency server ---------------------------------------------------------------------------


def _canned_responses(tokens):
    words = [f" word{i}" for i in range(tokens)]
    usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
    whole = json.dumps({"id": "cmpl-1", "object": "text_completion", "model": MODEL, "usage": usage,
                        "choices": [{"index": 0, "text": "".join(words), "finish_reason": "length"}]}).encode()
    events = []
    for index, word in enumerate(words):
        finish = "length" if index == tokens - 1 else None
        chunk = {"id": "cmpl-1", "object": "text_completion", "model": MODEL,
                 "choices": [{"index": 0, "text": word, "finish_reason": finish}]}
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    events.append(b"data: " + json.dumps({"id": "cmpl-1", "choices": [], "usage": usage}).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    stream = b"".join(events)
    def head(content_type, length):
        return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode()

    return head("application/json", len(whole)) + whole, head("text/event-stream", len(stream)) + stream


class StubProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: read headers + Content-Length body, answer a canned streamed or JSON completion."""

    whole = stream = b""

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            marker = head.find(b"content-length:")
            length = int(head[marker + 15:head.find(b"\r\n", marker) if head.find(b"\r\n", marker) > 0 else None]) \
                if marker >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            streamed = b'"stream": true' in body or b'"stream":true' in body
            self.transport.write(self.stream if streamed else self.whole)


def serve_stub(port, tokens):
    StubProtocol.whole, StubProtocol.stream = _canned_responses(tokens)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(StubProtocol, "127.0.0.1", port))
    print("stub listening on", port, flush=True)
    loop.run_until_complete(server.serve_forever())


# --- the two clients ---------------------------------------------------------------------------------------


def seed_method(base_url, count, concurrency):
    """seed-workflow.md 3.4: ThreadPoolExecutor + one requests.Session, stream=false, success = choices[0].text."""
    session = requests.Session()
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0.7}

    def one(_):
        started = time.perf_counter()
        response = session.post(base_url + "/v1/completions", json=body, timeout=60)
        ok = response.status_code == 200 and bool(response.json()["choices"][0]["text"])
        return ok, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, range(count)))
    wall = time.perf_counter() - started
    return sum(ok for ok, _ in results), wall


def collection_method(base_url, count, concurrency):
    config = inference_load.build_config(
        base_url=base_url, model=MODEL, concurrency=[concurrency], warmup_seconds=0, duration_seconds=0,
        max_requests_per_step=count, max_tokens=MAX_TOKENS, temperature=0.7)
    started = time.perf_counter()
    result = inference_load.run(config)
    wall = time.perf_counter() - started
    step = result["steps"][0]
    if step["errors"]:
        print("  collection client errors:", step["errors"], step["error_examples"])
    return step["successful"], wall


# --- orchestration -----------------------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin(pid, cores):
    try:
        os.sched_setaffinity(pid, cores)
        return True
    except (AttributeError, OSError):
        return False


def probe(base_url, timeout=5.0):
    body = {"model": MODEL, "prompt": "probe", "max_tokens": 2}
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return requests.post(base_url + "/v1/completions", json=body, timeout=timeout).status_code == 200
        except requests.RequestException:
            time.sleep(0.2)
    return False


def start_server(kind, port):
    if kind == "vllm_sim":
        cmd = [sys.executable, "-m", "localcluster.vllm_sim", "--host", "127.0.0.1", "--port", str(port),
               "--zero-latency", "--served-model-name", MODEL, "--disable-log-requests"]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--serve-stub", str(port)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def launch(kind, server_cores):
    """Start the server (vllm_sim first when kind is auto); return (process, base_url, kind)."""
    for candidate in (["vllm_sim", "stub"] if kind == "auto" else [kind]):
        port = free_port()
        process = start_server(candidate, port)
        os.sched_setaffinity(process.pid, server_cores)
        base_url = f"http://127.0.0.1:{port}"
        if probe(base_url, timeout=15):
            return process, base_url, candidate
        stop(process)
        print(f"server {candidate} did not answer a completion within 15 s")
    raise SystemExit("no server available")


def measure(name, method, base_url, count, rounds):
    """Median req/s over rounds, and the client's CPU time per request (all threads of this process)."""
    rates, cpu = [], []
    for _ in range(rounds):
        cpu_before = time.process_time()
        ok, wall = method(base_url, count, CONCURRENCY)
        cpu.append((time.process_time() - cpu_before) / count * 1000.0)
        if ok != count:
            raise SystemExit(f"{name}: only {ok} of {count} requests succeeded")
        rates.append(count / wall)
    return statistics.median(rates), rates, statistics.median(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per method and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per method (median reported)")
    parser.add_argument("--server", choices=["auto", "vllm_sim", "stub"], default="stub")
    parser.add_argument("--server-cores", choices=["other", "all"], default="other",
                        help="cores for the server: all but the client's (default) or all, shared with the client")
    parser.add_argument("--serve-stub", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        serve_stub(args.serve_stub, MAX_TOKENS)
        return
    cores = set(os.sched_getaffinity(0))
    client_core = min(cores)
    server_cores = cores if args.server_cores == "all" or len(cores) == 1 else cores - {client_core}
    process, base_url, kind = launch(args.server, server_cores)
    try:
        pinned = pin(0, {client_core})
        print(f"server: {kind} at {base_url} on cores {sorted(server_cores)}; client pinned to core {client_core} "
              f"({'ok' if pinned else 'affinity not supported'})")
        print(f"workload: {args.requests} requests x {args.rounds} rounds, concurrency {CONCURRENCY}, "
              f"max_tokens {MAX_TOKENS}")
        seed = measure("seed", seed_method, base_url, args.requests, args.rounds)
        ours = measure("collection", collection_method, base_url, args.requests, args.rounds)
    finally:
        stop(process)
    report("seed method (ThreadPoolExecutor + requests, non-streaming)", *seed)
    report("inference_load (asyncio + httptools, streaming SSE)", *ours)
    ratio, cpu_ratio = ours[0] / seed[0], seed[2] / ours[2]
    print(f"ratio req/s:                 {ratio:.2f}x (target >= 5x) {'PASS' if ratio >= 5 else 'BELOW TARGET'}")
    print(f"ratio client CPU per request: {cpu_ratio:.2f}x (one core serves {1000 / ours[2]:.0f} req/s with "
          f"inference_load vs {1000 / seed[2]:.0f} req/s with the seed's method)")
    if ratio < cpu_ratio * 0.8:
        print("note: req/s is limited by the server or by other load on this machine, not by the client "
              "(the client CPU ratio is the client's own cost)")


def report(label, rps, rounds, cpu_ms):
    print(f"{label:<60} {rps:8.1f} req/s  {cpu_ms:.3f} client CPU ms/req  rounds "
          + " ".join(f"{r:.1f}" for r in rounds))


if __name__ == "__main__":
    main()
