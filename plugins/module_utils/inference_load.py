# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Load generator and statistics for OpenAI-compatible inference servers.

Used by the ``inference_benchmark`` module. One asyncio event loop drives every request over a
pool of keep-alive HTTP/1.1 connections (parsed by httptools) and reads streamed Server-Sent Events, so
time to first token and inter-token latency are real, and the client stays far below the server's
capacity even on one CPU core.

Load models (as in vLLM's ``bench serve`` and kubernetes-sigs/inference-perf):

* ``concurrency``: closed loop, N workers each sending the next request when the last one ends.
* ``poisson``: open loop, arrivals at exponentially distributed intervals at a fixed mean rate.

Each step runs a warm-up (requests sent, not recorded) and then a measured window.
"""

import asyncio
import json
import math
import random
import re
import ssl
import time
import traceback
import urllib.parse

from ansible_collections.llm_serving.gke.plugins.module_utils.vllm_versions import METRIC_ROLES

try:
    import aiohttp

    AIOHTTP_IMPORT_ERROR = None
except ImportError:  # reported by the module through missing_required_lib
    aiohttp = None
    AIOHTTP_IMPORT_ERROR = traceback.format_exc()

try:
    import httptools

    HTTPTOOLS_IMPORT_ERROR = None
except ImportError:  # reported by the module through missing_required_lib
    httptools = None
    HTTPTOOLS_IMPORT_ERROR = traceback.format_exc()

KV_BLOCK_TOKENS = 16
PERCENTILES = (50, 90, 95, 99)
LOAD_MODELS = ("concurrency", "poisson")
WORKLOADS = ("distinct", "shared_prefix")
ENDPOINTS = ("completions", "chat")

# vLLM metric names by role, from the collection's vLLM version table (vllm_versions.METRIC_ROLES: the V1
# token counters of 0.9+ first, then V1's deprecated gpu_* names of 0.8/0.9), plus names without _total.
PREFIX_HITS_METRICS = METRIC_ROLES["prefix_cache_hits"] + ("vllm:prefix_cache_hits",)
PREFIX_QUERIES_METRICS = METRIC_ROLES["prefix_cache_queries"] + ("vllm:prefix_cache_queries",)
# The V0 engine (vLLM < 0.11 on GPUs below compute capability 8.0, e.g. the T4) has no such counters, only the
# gauge vllm:gpu_prefix_cache_hit_rate: block hit rate since the engine started, exposed by vLLM 0.8/0.9 with
# --show-hidden-metrics-for-version=<previous minor> (vllm-project/vllm v0.8.4 vllm/engine/metrics.py).
PREFIX_HIT_RATE_METRICS = METRIC_ROLES["prefix_cache_hit_rate"]
REQUEST_COUNT_METRICS = METRIC_ROLES["requests"] + ("vllm:e2e_request_latency_seconds_count",)

_WORDS = (
    "cluster", "node", "pool", "gateway", "route", "model", "token", "cache", "prefix", "block", "replica",
    "latency", "throughput", "request", "response", "stream", "server", "client", "batch", "queue", "memory",
    "kernel", "tensor", "layer", "weight", "vector", "matrix", "sample", "policy", "quota", "region", "zone",
    "network", "packet", "socket", "thread", "process", "signal", "buffer", "record", "metric", "alert",
    "river", "mountain", "forest", "ocean", "desert", "valley", "island", "harbor", "bridge", "tower",
    "garden", "market", "library", "museum", "theory", "method", "result", "figure", "table", "chapter",
    "section", "summary", "report", "review", "draft", "letter", "journal", "amber", "silver", "golden",
    "crimson", "violet", "copper", "marble", "velvet", "silent", "rapid", "gentle", "bright", "hollow",
    "steady",
)

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


class BenchmarkConfigError(ValueError):
    """Invalid benchmark settings; the message names the option."""


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

DEFAULTS = {
    "endpoint": "completions",
    "load_model": "concurrency",
    "concurrency": [1],
    "request_rates": [],
    "max_concurrency": 256,
    "warmup_seconds": 2.0,
    "duration_seconds": 10.0,
    "max_requests_per_step": None,
    "workload": "distinct",
    "prompt_tokens": 32,
    "shared_prefix_tokens": 256,
    "prefix_groups": 4,
    "max_tokens": 32,
    "temperature": 0.0,
    "ignore_eos": False,
    "stream": True,
    "request_timeout": 60.0,
    "metrics_urls": [],
    "headers": {},
    "validate_certs": True,
    "seed": 0,
}


def build_config(**options):
    """Merge options over DEFAULTS (ignoring None) and validate; raise BenchmarkConfigError naming the option."""
    config = dict(DEFAULTS)
    config.update({key: value for key, value in options.items() if value is not None})
    unknown = sorted(set(config) - set(DEFAULTS) - {"base_url", "model"})
    if unknown:
        raise BenchmarkConfigError(f"unknown benchmark option(s): {', '.join(unknown)}")
    for required in ("base_url", "model"):
        if not config.get(required):
            raise BenchmarkConfigError(f"{required} is required")
    config["base_url"] = config["base_url"].rstrip("/")
    _validate(config)
    return config


def _validate(config):
    _check_choice(config, "endpoint", ENDPOINTS)
    _check_choice(config, "load_model", LOAD_MODELS)
    _check_choice(config, "workload", WORKLOADS)
    if not re.match(r"^https?://", config["base_url"]):
        raise BenchmarkConfigError(f"base_url must start with http:// or https://, got {config['base_url']!r}")
    steps_key = "concurrency" if config["load_model"] == "concurrency" else "request_rates"
    steps = config[steps_key]
    if not steps:
        raise BenchmarkConfigError(f"{steps_key} must list at least one step for load_model={config['load_model']}")
    for value in steps:
        if _not_number(value) or value <= 0 or (steps_key == "concurrency" and int(value) != value):
            kind = "integers" if steps_key == "concurrency" else "numbers"
            raise BenchmarkConfigError(f"{steps_key} entries must be positive {kind}, got {value!r}")
    _check_positive(config, "max_concurrency", integer=True)
    _check_positive(config, "warmup_seconds", allow_zero=True)
    if config["max_requests_per_step"] is None and not config["duration_seconds"]:
        raise BenchmarkConfigError("set duration_seconds or max_requests_per_step, or a step never ends")
    if config["duration_seconds"]:
        _check_positive(config, "duration_seconds")
    if config["max_requests_per_step"] is not None:
        _check_positive(config, "max_requests_per_step", integer=True)
    for key in ("prompt_tokens", "max_tokens", "prefix_groups"):
        _check_positive(config, key, integer=True)
    _check_positive(config, "request_timeout")
    if config["workload"] == "shared_prefix" and config["shared_prefix_tokens"] <= KV_BLOCK_TOKENS:
        raise BenchmarkConfigError(
            f"shared_prefix_tokens must be longer than one {KV_BLOCK_TOKENS}-token KV block "
            f"(got {config['shared_prefix_tokens']!r}): a shorter prefix can never be a prefix-cache hit")
    if _not_number(config["temperature"]) or config["temperature"] < 0:
        raise BenchmarkConfigError(f"temperature must be a number >= 0, got {config['temperature']!r}")


def _not_number(value):
    return isinstance(value, bool) or not isinstance(value, (int, float))


def _check_choice(config, key, choices):
    if config[key] not in choices:
        raise BenchmarkConfigError(f"{key} must be one of {', '.join(choices)}, got {config[key]!r}")


def _check_positive(config, key, integer=False, allow_zero=False):
    value = config[key]
    bad = _not_number(value) or (integer and int(value) != value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        kind = "non-negative" if allow_zero else "positive" + (" whole" if integer else "")
        raise BenchmarkConfigError(f"{key} must be a {kind} number, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------


def _words(rng, count):
    return " ".join(rng.choices(_WORDS, k=count))


class PromptSource:
    """Endless prompts. ``distinct``: every prompt starts with a unique tag, so no two share a KV block.
    ``shared_prefix``: each request takes one of ``prefix_groups`` long shared prefixes at random, followed
    by a unique question; one word is at least one token, so the prefix spans several 16-token blocks."""

    def __init__(self, config, salt=""):
        self.config = config
        self.rng = random.Random(f"{config['seed']}/{salt}")
        self.count = 0
        self.prefixes = []
        if config["workload"] == "shared_prefix":
            for group in range(config["prefix_groups"]):
                body = _words(random.Random(f"prefix/{config['seed']}/{group}"), config["shared_prefix_tokens"])
                self.prefixes.append(f"Shared context {group}: {body}.")

    def next_prompt(self):
        index = self.count
        self.count += 1
        question = _words(self.rng, self.config["prompt_tokens"])
        if self.prefixes:
            # A random group, not index % groups: a cycle would align with a gateway's round robin.
            prefix = self.prefixes[self.rng.randrange(len(self.prefixes))]
            return f"{prefix} Question {index}: {question}?"
        return f"Request {index}-{self.rng.getrandbits(32):08x}: {question}."


def request_body(config, prompt):
    """JSON body of one streamed request, for /v1/completions or /v1/chat/completions."""
    body = {
        "model": config["model"],
        "max_tokens": config["max_tokens"],
        "temperature": config["temperature"],
        "stream": config["stream"],
    }
    if config["stream"]:
        body["stream_options"] = {"include_usage": True}
    if config["ignore_eos"]:
        body["ignore_eos"] = True
    if config["endpoint"] == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


def endpoint_path(config):
    return "/v1/chat/completions" if config["endpoint"] == "chat" else "/v1/completions"


# ---------------------------------------------------------------------------------------------
# One request
# ---------------------------------------------------------------------------------------------


def _chunk_text(choice):
    if "text" in choice:
        return choice.get("text") or ""
    delta = choice.get("delta") or choice.get("message") or {}
    return delta.get("content") or ""


class _StreamState:
    """Accumulates one response: event arrival times, token counts, completion markers.

    Streamed events are kept as raw bytes with their arrival time and decoded together when the response
    ends: one JSON decode per response instead of one per token keeps the client cheap.
    """

    def __init__(self, started):
        self.started = started
        self.pending = []
        self.token_times = []
        self.usage = None
        self.finished = False
        self.saw_choices = False

    def feed_line(self, payload, now):
        if payload == b"[DONE]":
            self.finished = True
        elif payload:
            self.pending.append((payload, now))

    def flush(self):
        """Decode the streamed events received so far, in order."""
        if not self.pending:
            return
        payloads, times = zip(*self.pending, strict=True)
        self.pending = []
        events = json.loads(b"[" + b",".join(payloads) + b"]")
        for event, now in zip(events, times, strict=True):
            self.feed(event, now)

    def feed(self, event, now):
        if not isinstance(event, dict):
            raise ValueError(f"event is not a JSON object: {event!r:.80}")
        if event.get("error"):
            raise _ServerError(event["error"])
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or []:
            self.saw_choices = True
            if _chunk_text(choice):
                self.token_times.append(now)
            if choice.get("finish_reason"):
                self.finished = True


class _ServerError(Exception):
    pass


def _new_record(step, prompt):
    return {
        "step": step, "start_s": None, "ok": False, "status": None, "error": None, "error_detail": None,
        "ttft_s": None, "e2e_s": None, "itl_s": [], "output_tokens": 0, "prompt_tokens": None,
        "prompt_chars": len(prompt),
    }


async def send_request(pool, config, prompt, step, clock_zero):
    """Send one request and return its record; never raises for request failures (they are classified)."""
    record = _new_record(step, prompt)
    started = time.perf_counter()
    record["start_s"] = started - clock_zero
    body = json.dumps(request_body(config, prompt)).encode()
    state = _StreamState(started)
    try:
        exchange = await pool.post(body, state)
        record["status"] = exchange.status
        if exchange.status != 200:
            record["error"] = f"http_{exchange.status}"
            record["error_detail"] = exchange.error_body().decode("utf-8", "replace")[:200]
        else:
            exchange.finish()
            _finish_record(record, state)
    except TimeoutError:
        record["error"] = "timeout"
    except _ServerError as exc:
        record["error"], record["error_detail"] = "server_error", str(exc)[:200]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        record["error"], record["error_detail"] = "protocol_error", str(exc)[:200]
    except IncompleteResponse as exc:
        record["error"], record["error_detail"] = "incomplete_stream", str(exc)[:200]
    except OSError as exc:
        record["error"], record["error_detail"] = "connection_error", f"{type(exc).__name__}: {str(exc)[:200]}"
    record["e2e_s"] = time.perf_counter() - started
    record["ok"] = record["error"] is None
    return record


def _finish_record(record, state):
    times = state.token_times
    if times:
        record["ttft_s"] = times[0] - state.started
        record["itl_s"] = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    usage = state.usage or {}
    record["output_tokens"] = usage.get("completion_tokens", len(times))
    record["prompt_tokens"] = usage.get("prompt_tokens")
    if not state.saw_choices:
        record["error"] = "no_choices"
    elif not state.finished:
        record["error"] = "incomplete_stream"
    elif not times:
        record["error"] = "empty_output"


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 transport
# ---------------------------------------------------------------------------------------------
# aiohttp's ClientSession costs about as much CPU per streamed request as the seed's thread pool. A benchmark
# client must stay far below the server's capacity, so requests go over keep-alive connections parsed by
# httptools (llhttp, the C parser uvicorn uses) straight from asyncio protocol callbacks.


class IncompleteResponse(Exception):
    """The connection ended before the response did."""


class _StaleConnection(ConnectionResetError):
    """A kept-alive connection closed before any byte of the response: safe to retry on a new one."""


class _Exchange:
    """One request/response: status, SSE lines fed to a _StreamState as they arrive, or a buffered body."""

    def __init__(self, state, event_stream, loop):
        self.state = state
        self.event_stream = event_stream
        self.status = None
        self.buffer = b""
        self.body = []
        self.received = False
        self.close_delimited = True
        self.done = loop.create_future()

    def on_body(self, data, now):
        if self.status != 200 or not self.event_stream:
            self.body.append(data)
            return
        self.buffer += data
        if b"\n" not in self.buffer:
            return
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                self.state.feed_line(line[5:].strip(), now)

    def finish(self):
        """After the response: decode the streamed events (and a last unterminated line), or the JSON body."""
        if self.event_stream:
            line = self.buffer.strip()
            if line.startswith(b"data:"):
                self.state.feed_line(line[5:].strip(), time.perf_counter())
            self.state.flush()
            return
        payload = json.loads(b"".join(self.body))
        if not isinstance(payload, dict):
            raise ValueError("response body is not a JSON object")
        self.state.feed(payload, time.perf_counter())
        self.state.finished = self.state.finished or self.state.saw_choices

    def error_body(self):
        return b"".join(self.body)

    def resolve(self, exc=None):
        if not self.done.done():
            if exc is None:
                self.done.set_result(self)
            else:
                self.done.set_exception(exc)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; httptools calls on_* while data_received feeds it."""

    def __init__(self):
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange = None
        self.closed = False
        self.now = 0.0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.now = time.perf_counter()
        exchange = self.exchange
        if exchange is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        exchange.received = True
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # malformed HTTP
            self.close()
            exchange.resolve(ValueError(f"malformed HTTP response: {exc}"))

    def on_header(self, name, value):
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.exchange.close_delimited = False

    def on_headers_complete(self):
        self.exchange.status = self.parser.get_status_code()

    def on_body(self, body):
        self.exchange.on_body(body, self.now)

    def on_message_complete(self):
        exchange, self.exchange = self.exchange, None
        if not self.parser.should_keep_alive():
            self.close()
        exchange.resolve()

    def connection_lost(self, exc):
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        if exchange.status is not None and exchange.close_delimited:
            exchange.resolve()  # HTTP/1.0-style body that ends with the connection
        elif not exchange.received:
            exchange.resolve(_StaleConnection("connection closed before the response started"))
        else:
            exchange.resolve(IncompleteResponse("connection closed before the response ended"))

    def expire(self, exchange):
        if self.exchange is exchange:
            self.exchange = None
            self.close()
            exchange.resolve(TimeoutError())

    def close(self):
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to the base URL; POSTs a body to the completions path and awaits the response."""

    def __init__(self, config):
        url = urllib.parse.urlsplit(config["base_url"])
        self.https = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.https else 80)
        self.timeout = config["request_timeout"]
        self.event_stream = config["stream"]
        self.ssl = _ssl_context(config["validate_certs"]) if self.https else None
        path = url.path.rstrip("/") + endpoint_path(config)
        extra = "".join(f"{name}: {value}\r\n" for name, value in (config["headers"] or {}).items())
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUser-Agent: llm_serving.gke-inference_benchmark\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream, application/json\r\n{extra}"
            "Content-Length: ").encode("latin-1")
        self.idle = []

    async def _connect(self):
        loop = asyncio.get_running_loop()
        transport_and_protocol = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl,
                                   server_hostname=self.host if self.https else None), self.timeout)
        return transport_and_protocol[1]

    def _take_idle(self):
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
        return None

    async def post(self, body, state):
        loop = asyncio.get_running_loop()
        request = self.head + str(len(body)).encode() + b"\r\n\r\n" + body
        for attempt in (0, 1):
            connection = self._take_idle()
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            exchange = _Exchange(state, self.event_stream, loop)
            connection.exchange = exchange
            connection.transport.write(request)
            timer = loop.call_later(self.timeout, connection.expire, exchange)
            try:
                await exchange.done
            except _StaleConnection:
                if reused and attempt == 0:
                    continue  # the server closed an idle connection; HTTP clients retry these
                raise
            finally:
                timer.cancel()
            if not connection.closed:
                self.idle.append(connection)
            return exchange
        raise AssertionError("unreachable")

    def close(self):
        for connection in self.idle:
            connection.close()
        self.idle = []


def _ssl_context(validate_certs):
    context = ssl.create_default_context()
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# ---------------------------------------------------------------------------------------------
# Load models
# ---------------------------------------------------------------------------------------------


class _StepWindow:
    """Times of one step: warm-up end and measurement end, both on the perf_counter clock."""

    def __init__(self, config):
        self.start = time.perf_counter()
        self.measure_from = self.start + config["warmup_seconds"]
        duration = config["duration_seconds"]
        self.end = self.measure_from + duration if duration else math.inf
        self.max_requests = config["max_requests_per_step"]
        self.measured_started = 0

    def open(self, now):
        return now < self.end and (self.max_requests is None or self.measured_started < self.max_requests)

    def claim(self, now):
        """Return True if a request starting now is measured (and count it)."""
        if now < self.measure_from:
            return False
        self.measured_started += 1
        return True


async def _run_concurrency_step(pool, config, prompts, concurrency, step, clock_zero):
    window = _StepWindow(config)
    records = []

    async def worker():
        while True:
            now = time.perf_counter()
            if not window.open(now):
                return
            measured = window.claim(now)
            record = await send_request(pool, config, prompts.next_prompt(), step, clock_zero)
            if measured:
                records.append(record)

    scrape = asyncio.ensure_future(_scrape_at(config, window.measure_from))
    await asyncio.gather(*(worker() for _worker in range(concurrency)))
    return window, records, await scrape


async def _run_poisson_step(pool, config, prompts, rate, step, clock_zero):
    window = _StepWindow(config)
    rng = random.Random(f"arrivals/{config['seed']}/{step}")
    limit = asyncio.Semaphore(config["max_concurrency"])
    records, tasks = [], []

    async def one(scheduled, measured):
        async with limit:
            record = await send_request(pool, config, prompts.next_prompt(), step, clock_zero)
        record["queue_delay_s"] = max(0.0, record["start_s"] + clock_zero - scheduled)
        if measured:
            records.append(record)

    scrape = asyncio.ensure_future(_scrape_at(config, window.measure_from))
    arrival = window.start
    while True:
        arrival += rng.expovariate(rate)
        if not window.open(arrival):
            break
        delay = arrival - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(arrival, window.claim(arrival))))
    await asyncio.gather(*tasks)
    return window, records, await scrape


async def _scrape_at(config, when):
    """Scrape replica metrics once the warm-up is over (None when no metrics_urls are set)."""
    if not config["metrics_urls"]:
        return None
    delay = when - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    return await scrape_replicas(config)


# ---------------------------------------------------------------------------------------------
# Replica metrics (Prometheus text format)
# ---------------------------------------------------------------------------------------------


def parse_prometheus(text):
    """Sum every sample of each metric name over its label sets: {name: value}."""
    totals = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _METRIC_LINE.match(line)
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        totals[match.group(1)] = totals.get(match.group(1), 0.0) + value
    return totals


def _first_present(totals, names):
    for name in names:
        if name in totals:
            return totals[name]
    return None


def replica_counters(totals):
    counters = {
        "prefix_cache_hits": _first_present(totals, PREFIX_HITS_METRICS),
        "prefix_cache_queries": _first_present(totals, PREFIX_QUERIES_METRICS),
        "requests": _first_present(totals, REQUEST_COUNT_METRICS),
    }
    hit_rate = _first_present(totals, PREFIX_HIT_RATE_METRICS)
    if hit_rate is not None:  # V0 engine
        counters["prefix_cache_hit_rate"] = hit_rate
    return counters


async def scrape_replicas(config):
    """GET <url>/metrics of every replica concurrently: {url: counters or {"error": ...}}."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, headers=config["headers"]) as session:
        results = await asyncio.gather(*(_scrape_one(session, config, url) for url in config["metrics_urls"]))
    return dict(zip(config["metrics_urls"], results, strict=False))


async def _scrape_one(session, config, url):
    target = url.rstrip("/")
    target = target if target.endswith("/metrics") else target + "/metrics"
    try:
        async with session.get(target, ssl=None if config["validate_certs"] else False) as response:
            if response.status != 200:
                return {"error": f"HTTP {response.status} from {target}"}
            return replica_counters(parse_prometheus(await response.text()))
    except Exception as exc:  # one unreachable replica must not abort the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"}


def cache_report(before, after):
    """Prefix-cache hit rate and request share from two scrapes (counter deltas per replica)."""
    if before is None or after is None:
        return None
    replicas, errors = {}, {}
    for url in before:
        old, new = before[url], after.get(url, {"error": "missing in second scrape"})
        if "error" in old or "error" in new:
            errors[url] = old.get("error") or new.get("error")
            continue
        replicas[url] = {key: _delta(old[key], new[key]) for key in ("prefix_cache_hits", "prefix_cache_queries",
                                                                     "requests")}
    hits = sum(r["prefix_cache_hits"] or 0 for r in replicas.values())
    queries = sum(r["prefix_cache_queries"] or 0 for r in replicas.values())
    requests = sum(r["requests"] or 0 for r in replicas.values())
    gauges = {}
    for url, counters in replicas.items():
        counters["hit_rate"] = _ratio(counters["prefix_cache_hits"], counters["prefix_cache_queries"])
        counters["request_share"] = _ratio(counters["requests"], requests)
        gauge = after[url].get("prefix_cache_hit_rate")
        if counters["prefix_cache_queries"] is None and gauge is not None:  # V0: only the since-start gauge
            counters["hit_rate"] = gauges[url] = gauge
    hit_rate, metric = _ratio(hits, queries), f"{PREFIX_HITS_METRICS[0]} / {PREFIX_QUERIES_METRICS[0]} (deltas)"
    if hit_rate is None and gauges:  # weighted by the requests each V0 replica served in the run
        weights = {url: replicas[url]["requests"] or 0 for url in gauges}
        total = sum(weights.values())
        hit_rate = (sum(gauges[u] * weights[u] for u in gauges) / total if total
                    else sum(gauges.values()) / len(gauges))
        metric = f"{PREFIX_HIT_RATE_METRICS[0]} (V0 engine gauge: block hit rate since the replica started)"
    return {
        "hit_rate": hit_rate, "hit_rate_metric": metric, "prefix_cache_hits": hits, "prefix_cache_queries": queries,
        "requests": requests, "replicas": replicas, "errors": errors,
    }


def _delta(old, new):
    if old is None or new is None:
        return None
    # A counter that went down means the replica restarted: count from zero.
    return new - old if new >= old else new


def _ratio(part, whole):
    if part is None or not whole:
        return None
    return part / whole


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def percentile(sorted_values, pct):
    """Linear-interpolated percentile (numpy's default) of an already sorted list."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = int(math.floor(rank))
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def distribution_ms(values_s):
    """mean/min/max and p50/p90/p95/p99 in milliseconds of values given in seconds."""
    values = sorted(v * 1000.0 for v in values_s if v is not None)
    summary = {"count": len(values), "mean": None, "min": None, "max": None}
    summary.update({f"p{pct}": percentile(values, pct) for pct in PERCENTILES})
    if values:
        summary.update(mean=sum(values) / len(values), min=values[0], max=values[-1])
    return summary


def summarize_step(records, label, window_start=None):
    """Throughput, latency distributions, success rate and error classes of one step's records."""
    ok = [r for r in records if r["ok"]]
    errors, examples = {}, {}
    for record in records:
        if not record["ok"]:
            errors[record["error"]] = errors.get(record["error"], 0) + 1
            examples.setdefault(record["error"], record["error_detail"])
    duration = _measured_duration(records, window_start)
    output_tokens = sum(r["output_tokens"] or 0 for r in ok)
    summary = dict(label)
    summary.update({
        "requests": len(records),
        "successful": len(ok),
        "failed": len(records) - len(ok),
        "success_rate": (len(ok) / len(records)) if records else None,
        "duration_s": duration,
        "requests_per_s": (len(ok) / duration) if duration else None,
        "output_tokens_per_s": (output_tokens / duration) if duration else None,
        "output_tokens": output_tokens,
        "ttft_ms": distribution_ms(r["ttft_s"] for r in ok),
        "itl_ms": distribution_ms(gap for r in ok for gap in r["itl_s"]),
        "tpot_ms": distribution_ms(_tpot(r) for r in ok),
        "e2e_ms": distribution_ms(r["e2e_s"] for r in ok),
        "errors": errors,
        "error_examples": examples,
    })
    return summary


def _tpot(record):
    if record["ttft_s"] is None or (record["output_tokens"] or 0) < 2:
        return None
    return (record["e2e_s"] - record["ttft_s"]) / (record["output_tokens"] - 1)


def _measured_duration(records, window_start):
    if not records:
        return None
    first = min(r["start_s"] for r in records) if window_start is None else min(window_start, *(
        r["start_s"] for r in records))
    last = max(r["start_s"] + r["e2e_s"] for r in records)
    return max(last - first, 1e-9)


def summarize_run(steps, records):
    """Figures across all steps, used by threshold checks: overall success, best req/s, overall p95."""
    ok = [r for r in records if r["ok"]]
    rates = [s["requests_per_s"] for s in steps if s["requests_per_s"] is not None]
    hit_rates = [s["cache"]["hit_rate"] for s in steps if s.get("cache") and s["cache"]["hit_rate"] is not None]
    return {
        "requests": len(records),
        "successful": len(ok),
        "success_rate": (len(ok) / len(records)) if records else None,
        "max_requests_per_s": max(rates) if rates else None,
        "max_output_tokens_per_s": max((s["output_tokens_per_s"] or 0 for s in steps), default=None),
        "ttft_ms": distribution_ms(r["ttft_s"] for r in ok),
        "e2e_ms": distribution_ms(r["e2e_s"] for r in ok),
        "cache_hit_rate": min(hit_rates) if hit_rates else None,
        "errors": _merge_counts(s["errors"] for s in steps),
    }


def _merge_counts(dicts):
    merged = {}
    for counts in dicts:
        for key, value in counts.items():
            merged[key] = merged.get(key, 0) + value
    return merged


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


async def run_benchmark(config):
    """Run every step of ``config`` (from build_config); return {"summary", "steps", "records"}."""
    for name, error in (("aiohttp", AIOHTTP_IMPORT_ERROR), ("httptools", HTTPTOOLS_IMPORT_ERROR)):
        if error:
            raise BenchmarkConfigError(f"the {name} Python library is required: {error}")
    is_rate = config["load_model"] == "poisson"
    step_values = config["request_rates"] if is_rate else config["concurrency"]
    prompts = PromptSource(config)
    clock_zero = time.perf_counter()
    steps, all_records = [], []
    pool = ConnectionPool(config)
    try:
        for index, value in enumerate(step_values):
            runner = _run_poisson_step if is_rate else _run_concurrency_step
            window, records, after_warmup = await runner(pool, config, prompts, value, index, clock_zero)
            after = await scrape_replicas(config) if config["metrics_urls"] else None
            label = {"step": index, ("request_rate" if is_rate else "concurrency"): value}
            summary = summarize_step(records, label, window.measure_from - clock_zero)
            # Counters are read when the warm-up ends, so cache fill during warm-up is not counted.
            summary["cache"] = cache_report(after_warmup, after)
            steps.append(summary)
            all_records.extend(records)
    finally:
        pool.close()
    return {"summary": summarize_run(steps, all_records), "steps": steps, "records": all_records}


def run(config):
    """Synchronous wrapper for modules and scripts."""
    return asyncio.run(run_benchmark(config))
