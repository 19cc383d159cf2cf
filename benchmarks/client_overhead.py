#!/usr/bin/env python3
"""Client overhead: this collection's load generator vs the seed's benchmark method, on one CPU core.

A benchmark client must not be the bottleneck. The seed's ``benchmark-vllm.py`` (seed-workflow.md 3.4) used a
ThreadPoolExecutor with 20 workers and one shared ``requests.Session``, non-streaming; its "Heavy" runs reached
33.7 and 38.0 req/s, near what that client can do against a remote gateway. This script serves completions from
a zero-latency local server on one core and drives it from a client pinned to another core, first with the
seed's method, then with ``plugins/module_utils/inference_load.py`` (asyncio + aiohttp, streaming, so it also
parses every token event), for the same number of requests at the same concurrency. It prints both req/s and
the ratio; the target is at least 5x.

Servers: ``vllm_sim`` (``python -m localcluster.vllm_sim --zero-latency``) or ``stub`` (a minimal asyncio HTTP/1.1
server in this file that answers from memory). ``auto`` uses vllm_sim when it answers a probe, else the stub.
The stub costs less CPU per request, so it shows the client limit more clearly.

    .venv/bin/python benchmarks/client_overhead.py [--requests 3000] [--server auto|vllm_sim|stub]
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
    words = [" word%d" % i for i in range(tokens)]
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
    head = "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
    return (head % ("application/json", len(whole))).encode() + whole, \
        (head % ("text/event-stream", len(stream))).encode() + stream


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


def pin(pid, core):
    try:
        os.sched_setaffinity(pid, {core})
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


def launch(kind, server_core):
    """Start the server (vllm_sim first when kind is auto); return (process, base_url, kind)."""
    for candidate in (["vllm_sim", "stub"] if kind == "auto" else [kind]):
        port = free_port()
        process = start_server(candidate, port)
        pin(process.pid, server_core)
        base_url = "http://127.0.0.1:%d" % port
        if probe(base_url, timeout=15):
            return process, base_url, candidate
        stop(process)
        print("server %s did not answer a completion within 15 s" % candidate)
    raise SystemExit("no server available")


def measure(name, method, base_url, count, rounds):
    """Median req/s over rounds, and the client's CPU time per request (all threads of this process)."""
    rates, cpu = [], []
    for _ in range(rounds):
        cpu_before = time.process_time()
        ok, wall = method(base_url, count, CONCURRENCY)
        cpu.append((time.process_time() - cpu_before) / count * 1000.0)
        if ok != count:
            raise SystemExit("%s: only %d of %d requests succeeded" % (name, ok, count))
        rates.append(count / wall)
    return statistics.median(rates), rates, statistics.median(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per method and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per method (median reported)")
    parser.add_argument("--server", choices=["auto", "vllm_sim", "stub"], default="auto")
    parser.add_argument("--serve-stub", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        serve_stub(args.serve_stub, MAX_TOKENS)
        return
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    client_core, server_core = cores[0], cores[-1]
    process, base_url, kind = launch(args.server, server_core)
    try:
        pinned = pin(0, client_core)
        print("server: %s at %s on core %d; client pinned to core %s (%s)" % (
            kind, base_url, server_core, client_core, "ok" if pinned else "affinity not supported"))
        print("workload: %d requests x %d rounds, concurrency %d, max_tokens %d" % (
            args.requests, args.rounds, CONCURRENCY, MAX_TOKENS))
        seed_rps, seed_all, seed_cpu = measure("seed", seed_method, base_url, args.requests, args.rounds)
        ours_rps, ours_all, ours_cpu = measure("collection", collection_method, base_url, args.requests, args.rounds)
    finally:
        stop(process)
    print("seed method (ThreadPoolExecutor + requests, non-streaming): %8.1f req/s  %.3f client CPU ms/req  "
          "rounds %s" % (seed_rps, seed_cpu, " ".join("%.1f" % r for r in seed_all)))
    print("inference_load (asyncio + httptools, streaming SSE):      %8.1f req/s  %.3f client CPU ms/req  "
          "rounds %s" % (ours_rps, ours_cpu, " ".join("%.1f" % r for r in ours_all)))
    ratio = ours_rps / seed_rps
    print("client CPU per request: seed / inference_load = %.2fx" % (seed_cpu / ours_cpu))
    print("ratio: %.2fx req/s (target >= 5x) %s" % (ratio, "PASS" if ratio >= 5 else "BELOW TARGET"))


if __name__ == "__main__":
    main()
