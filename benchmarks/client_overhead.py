#!/usr/bin/env python3
"""Client overhead: this collection's load generator vs the seed's benchmark method, on one CPU core.

A benchmark client must not be the bottleneck. The seed's ``benchmark-vllm.py`` (johnahull/llm-d-xks-gke @7630140c,
``deployments/llm-d-infra-xks-gke-tpu-native-gateway/scripts/benchmark-vllm.py``) used a
ThreadPoolExecutor with 20 workers and one shared ``requests.Session``, non-streaming. This script serves
completions from a zero-latency local server and drives it from a client process pinned to one core
(os.sched_setaffinity; the server gets another core), first with the seed's method, then with
``plugins/module_utils/inference_load.py`` (asyncio + httptools over keep-alive HTTP/1.1, streaming, so it also
parses every token event), for the same number of requests at the same concurrency (20).

It prints req/s of both and their ratio (target >= 5x), and the client's CPU time per request
(time.process_time over all threads), whose ratio is the client's own cost and does not depend on how fast
the server is or how busy the machine is.

Servers:

- ``nginx`` (the default when an nginx binary is installed, e.g. Debian's ``nginx-light``): a child nginx with its
  own temporary config and prefix dir (``-g 'daemon off;'``, one worker, access log off, keep-alive without a
  request limit) that answers from memory with ``return 200 '<canned body>'``. nginx cannot pick the response from
  the request body, so it serves the same bodies the stub sends on two path families: ``/v1/completions`` and
  ``/v1/chat/completions`` answer the non-streaming JSON (the seed's method and the probe use these), and
  ``/stream/v1/completions`` and ``/stream/v1/chat/completions`` answer the SSE stream (token chunks, a usage
  chunk, ``data: [DONE]``); inference_load gets ``base_url=<server>/stream``. One nginx worker serves far more
  requests per core than either client, so req/s shows the clients' limits.
- ``stub``: a minimal asyncio HTTP/1.1 server in this file that answers the same bodies from memory, choosing
  streaming by ``"stream": true`` in the body (the fallback when nginx is not installed). Being Python, it costs
  more CPU per request than nginx; the script prints the server's CPU per request for every server.
- ``vllm_sim`` (``python -m localcluster.vllm_sim --zero-latency``); ``auto`` uses vllm_sim when it answers a probe
  within 15 s, else the stub. vllm_sim writes each token event separately and costs the server several times more
  CPU per request than the stub, so with it req/s shows the server's limit rather than the client's.

    .venv/bin/python benchmarks/client_overhead.py [--requests 3000] [--rounds 3] [--server nginx|stub|vllm_sim|auto]
"""
import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
sys.path.insert(0, ROOT)

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_load, inference_workload  # noqa: E402

MODEL = "bench-model"
PROMPT = "Explain quantum computing in one sentence:"  # the seed's benchmark prompt
MAX_TOKENS = 16
CONCURRENCY = 20  # the seed's "Heavy" scenario
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
STREAM_PREFIX = "/stream"  # nginx: where the SSE responses live (nginx cannot choose by the request body)


# --- minimal zero-latency server ---------------------------------------------------------------------------


def _canned_bodies(tokens, chat=False):
    """(non-streaming JSON, SSE stream) of one completion of `tokens` words, OpenAI completions or chat format."""
    words = [f" word{i}" for i in range(tokens)]
    usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
    if chat:
        kind, chunk_kind = "chat.completion", "chat.completion.chunk"
        whole_choice = {"index": 0, "message": {"role": "assistant", "content": "".join(words)}}
        choices = [{"index": 0, "delta": {"content": word}} for word in words]
    else:
        kind = chunk_kind = "text_completion"
        whole_choice = {"index": 0, "text": "".join(words)}
        choices = [{"index": 0, "text": word} for word in words]
    whole = json.dumps({"id": "cmpl-1", "object": kind, "model": MODEL, "usage": usage,
                        "choices": [dict(whole_choice, finish_reason="length")]}).encode()
    events = []
    for index, choice in enumerate(choices):
        finish = "length" if index == tokens - 1 else None
        chunk = {"id": "cmpl-1", "object": chunk_kind, "model": MODEL, "choices": [dict(choice, finish_reason=finish)]}
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    events.append(b"data: " + json.dumps({"id": "cmpl-1", "choices": [], "usage": usage}).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return whole, b"".join(events)


def _canned_responses(tokens):
    whole, stream = _canned_bodies(tokens)

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


# --- nginx: the same bodies from a C server ----------------------------------------------------------------


def _nginx_string(body):
    """A body as a single-quoted nginx string: nginx turns \\n back into newlines; no quote, backslash or $."""
    text = body.decode()
    if any(char in text for char in "'\\$"):
        raise ValueError("canned body contains a character nginx would interpret: ' \\ or $")
    return "'" + text.replace("\n", "\\n") + "'"


def nginx_config(workdir, port, tokens):
    locations = []
    only_post = "if ($request_method != POST) { return 405; }"  # `return` runs before limit_except would
    for path, chat in (("/v1/completions", False), ("/v1/chat/completions", True)):
        whole, stream = _canned_bodies(tokens, chat=chat)
        locations.append(f"        location = {path} {{ default_type application/json; {only_post} "
                         f"return 200 {_nginx_string(whole)}; }}")
        locations.append(f"        location = {STREAM_PREFIX}{path} {{ default_type text/event-stream; {only_post} "
                         f"return 200 {_nginx_string(stream)}; }}")
    return "\n".join([
        "worker_processes 1;",
        f"pid {workdir}/nginx.pid;",
        f"error_log {workdir}/error.log warn;",
        "events { worker_connections 1024; }",
        "http {",
        "    access_log off;",
        "    server_tokens off;",
        "    keepalive_requests 100000000;",  # never close a benchmark connection for its request count
        "    keepalive_timeout 120s;",
        f"    client_body_temp_path {workdir}/client_body;",
        "    server {",
        f"        listen 127.0.0.1:{port};",
        *locations,
        "        location / { return 404; }",
        "    }",
        "}",
        "",
    ])


def start_nginx(port, workdir, cores):
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(nginx_config(workdir, port, MAX_TOKENS))
    cmd = [NGINX, "-c", conf, "-p", workdir + "/", "-e", os.path.join(workdir, "error.log"), "-g", "daemon off;"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.sched_setaffinity(0, cores))  # master and worker inherit it


# --- the two clients ---------------------------------------------------------------------------------------


def seed_method(base_url, count, concurrency):
    """The seed's benchmark-vllm.py: ThreadPoolExecutor + one requests.Session, stream=false, success =
    choices[0].text."""
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
    config = inference_workload.build_config(
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


@dataclass
class Server:
    kind: str
    process: subprocess.Popen
    base_url: str  # the seed's method: non-streaming JSON
    stream_base_url: str  # inference_load: streamed SSE
    workdir: tempfile.TemporaryDirectory = None


def start_server(kind, port, cores):
    base_url = f"http://127.0.0.1:{port}"
    if kind == "nginx":
        workdir = tempfile.TemporaryDirectory(prefix="client-overhead-nginx-")
        return Server(kind, start_nginx(port, workdir.name, cores), base_url, base_url + STREAM_PREFIX, workdir)
    if kind == "vllm_sim":
        cmd = [sys.executable, "-m", "localcluster.vllm_sim", "--host", "127.0.0.1", "--port", str(port),
               "--zero-latency", "--served-model-name", MODEL, "--disable-log-requests"]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--serve-stub", str(port)]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.sched_setaffinity(process.pid, cores)
    return Server(kind, process, base_url, base_url)


def stop(server):
    """Stop the server by its PID (nginx: SIGTERM to the master, which stops its worker), remove its files."""
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.workdir:
        server.workdir.cleanup()


def launch(kind, server_cores):
    """Start the server (vllm_sim first when kind is auto) and return it once it answers a completion."""
    for candidate in (["vllm_sim", "stub"] if kind == "auto" else [kind]):
        server = start_server(candidate, free_port(), server_cores)
        if probe(server.base_url, timeout=15):
            return server
        stop(server)
        print(f"server {candidate} did not answer a completion within 15 s")
    raise SystemExit("no server available")


def choose_server(requested):
    """--server, defaulting to nginx when it is installed, else the stub (with a note)."""
    if requested is None:
        if NGINX:
            return "nginx"
        print("note: nginx not found (apt-get install nginx-light); using the Python stub server, which saturates "
              "its core below inference_load's rate, so the req/s ratio understates the client difference")
        return "stub"
    if requested == "nginx" and not NGINX:
        raise SystemExit("--server nginx: no nginx binary on PATH or at /usr/sbin/nginx (apt-get install nginx-light)")
    return requested


def process_tree_cpu(pid):
    """CPU seconds (user + system) of a process and its children (nginx: master + worker), from /proc; or None."""
    total, found = 0, False
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1] is the parent's PID
            total, found = total + int(fields[11]) + int(fields[12]), True  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK") if found else None


def runqueue_wait():
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat), or None."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def measure(name, method, base_url, count, rounds, server_pid):
    """Median req/s over rounds; medians of client CPU ms/request (all threads of this process), the share of its
    core the client got (CPU / wall: below ~90% means it waited for the server or for other processes) and the
    server's CPU ms/request; and the % of wall time this (main) thread waited for a CPU, which is meaningful for
    inference_load (one thread) only."""
    rates, cpu, share, server_cpu, waited = [], [], [], [], []
    for _ in range(rounds):
        cpu_before, server_before, wait_before = time.process_time(), process_tree_cpu(server_pid), runqueue_wait()
        ok, wall = method(base_url, count, CONCURRENCY)
        used = time.process_time() - cpu_before
        server_after, wait_after = process_tree_cpu(server_pid), runqueue_wait()
        if ok != count:
            raise SystemExit(f"{name}: only {ok} of {count} requests succeeded")
        rates.append(count / wall)
        cpu.append(used / count * 1000.0)
        share.append(used / wall * 100.0)
        if server_before is not None and server_after is not None:
            server_cpu.append((server_after - server_before) / count * 1000.0)
        if wait_before is not None and wait_after is not None:
            waited.append((wait_after - wait_before) / wall * 100.0)
    server_ms = statistics.median(server_cpu) if server_cpu else None
    waited_pct = statistics.median(waited) if waited else float("nan")
    return statistics.median(rates), rates, statistics.median(cpu), statistics.median(share), server_ms, waited_pct


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per method and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per method (median reported)")
    parser.add_argument("--server", choices=["nginx", "stub", "vllm_sim", "auto"], default=None,
                        help="zero-latency server (default: nginx when installed, else stub)")
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
    server = launch(choose_server(args.server), server_cores)
    try:
        pinned = pin(0, {client_core})
        print(f"server: {server.kind} at {server.base_url} on cores {sorted(server_cores)}; client pinned to core "
              f"{client_core} ({'ok' if pinned else 'affinity not supported'})")
        if server.stream_base_url != server.base_url:
            print(f"seed method -> {server.base_url}/v1/completions (JSON); inference_load -> "
                  f"{server.stream_base_url}/v1/completions (SSE)")
        print(f"workload: {args.requests} requests x {args.rounds} rounds, concurrency {CONCURRENCY}, "
              f"max_tokens {MAX_TOKENS}")
        pid = server.process.pid
        seed = measure("seed", seed_method, server.base_url, args.requests, args.rounds, pid)
        ours = measure("collection", collection_method, server.stream_base_url, args.requests, args.rounds, pid)
    finally:
        stop(server)
    report("seed method (ThreadPoolExecutor + requests, non-streaming)", *seed[:5])
    report("inference_load (asyncio + httptools, streaming SSE)", *ours[:5])
    ratio, cpu_ratio = ours[0] / seed[0], seed[2] / ours[2]
    print(f"ratio req/s:                 {ratio:.2f}x (target >= 5x) {'PASS' if ratio >= 5 else 'BELOW TARGET'}")
    print(f"ratio client CPU per request: {cpu_ratio:.2f}x (one core serves {1000 / ours[2]:.0f} req/s with "
          f"inference_load vs {1000 / seed[2]:.0f} req/s with the seed's method)")
    if ratio < cpu_ratio * 0.8:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"note: inference_load kept its core {ours[3]:.0f}% busy (seed method {seed[3]:.0f}%) and waited "
              f"{ours[5]:.0f}% of its wall time runnable for a CPU, with load average {load:.1f} on {os.cpu_count()} "
              "cores: req/s is limited by other load on this machine or by the server (its CPU per request above), "
              "not by the client (the client CPU ratio is its own cost)")


def report(label, rps, rounds, cpu_ms, share, server_ms):
    server = f"{server_ms:.3f}" if server_ms is not None else "n/a"
    print(f"{label:<60} {rps:8.1f} req/s  {cpu_ms:.3f} client CPU ms/req ({share:.0f}% of its core)  "
          f"server CPU {server} ms/req  rounds " + " ".join(f"{r:.1f}" for r in rounds))


if __name__ == "__main__":
    main()
