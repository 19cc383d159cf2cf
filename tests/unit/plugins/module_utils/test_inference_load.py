"""Load generator against a small in-process OpenAI-compatible server, and its statistics."""
import asyncio
import json
import threading

import pytest
from aiohttp import web

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_load as load
from ansible_collections.llm_serving.gke.plugins.module_utils import inference_metrics as metrics
from ansible_collections.llm_serving.gke.plugins.module_utils import inference_stats as stats
from ansible_collections.llm_serving.gke.plugins.module_utils import inference_workload as workload


class StubServer:
    """Streams ``tokens`` chunks per request, keeps a prefix cache of 16-word blocks and vLLM counters.

    ``fail_every``: every n-th request answers 503. ``http10_upgrade``: HTTP/1.0 requests get 426 like GKE.
    """

    def __init__(self, tokens=4, fail_every=0):
        self.tokens = tokens
        self.fail_every = fail_every
        self.count = 0
        self.protocols = set()
        self.cache = set()
        self.hits = self.queries = self.successes = 0
        self.bodies = []

    def app(self):
        app = web.Application()
        app.router.add_post("/v1/completions", self.complete)
        app.router.add_post("/v1/chat/completions", self.complete)
        app.router.add_get("/metrics", self.metrics)
        return app

    def _account_prefix(self, prompt):
        words = prompt.split()
        blocks = [" ".join(words[: end + 16]) for end in range(0, len(words) - 15, 16)]
        self.queries += len(words)
        for block in blocks:
            if block in self.cache:
                self.hits += 16
            self.cache.add(block)

    async def complete(self, request):
        self.protocols.add(request.version)
        if request.version < (1, 1):
            return web.Response(status=426, text="Upgrade Required")
        self.count += 1
        if self.fail_every and self.count % self.fail_every == 0:
            return web.Response(status=503, text="no healthy upstream")
        body = await request.json()
        self.bodies.append(body)
        prompt = body.get("prompt") or body["messages"][0]["content"]
        self._account_prefix(prompt)
        chat = "messages" in body
        if not body.get("stream"):
            choice = {"message": {"content": "ok"}} if chat else {"text": "ok"}
            self.successes += 1
            return web.json_response({"choices": [dict(choice, finish_reason="length")],
                                      "usage": {"completion_tokens": 1, "prompt_tokens": 3}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(self.tokens):
            choice = {"delta": {"content": " tok"}} if chat else {"text": " tok"}
            choice["finish_reason"] = "length" if index == self.tokens - 1 else None
            await response.write(b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
            await asyncio.sleep(0.001)
        usage = {"choices": [], "usage": {"completion_tokens": self.tokens, "prompt_tokens": len(prompt.split())}}
        await response.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
        self.successes += 1
        return response

    async def metrics(self, request):
        text = (
            "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in tokens.\n"
            "# TYPE vllm:prefix_cache_hits_total counter\n"
            f'vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} {float(self.hits)}\n'
            f'vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} {float(self.queries)}\n'
            f'vllm:request_success_total{{finished_reason="length",model_name="m"}} {float(self.successes)}\n'
            f'vllm:request_success_total{{finished_reason="stop",model_name="m"}} 0.0\n'
        )
        return web.Response(text=text)


class ServerThread:
    """Runs a StubServer on its own event loop thread at 127.0.0.1:<free port>."""

    def __init__(self, stub):
        self.stub = stub
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.stub.app())
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def __enter__(self):
        self.thread.start()
        self.ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def stub():
    return StubServer()


@pytest.fixture
def server(stub):
    with ServerThread(stub) as url:
        yield url


def config(url, **overrides):
    options = {"base_url": url, "model": "m", "warmup_seconds": 0, "duration_seconds": 0,
               "max_requests_per_step": 20}
    options.update(overrides)
    return workload.build_config(**options)


def test_concurrency_steps_stream_and_measure_ttft_and_itl(server, stub):
    result = load.run(config(server, concurrency=[1, 4]))
    steps = result["steps"]
    assert [s["concurrency"] for s in steps] == [1, 4]
    for step in steps:
        assert step["requests"] == 20 and step["successful"] == 20 and step["success_rate"] == 1.0
        assert step["output_tokens"] == 20 * stub.tokens
        assert step["ttft_ms"]["count"] == 20 and step["ttft_ms"]["p50"] > 0
        assert step["itl_ms"]["count"] == 20 * (stub.tokens - 1)
        assert step["e2e_ms"]["p99"] >= step["e2e_ms"]["p50"] >= step["ttft_ms"]["p50"]
        assert step["requests_per_s"] > 0 and step["output_tokens_per_s"] > 0
    assert stub.protocols == {(1, 1)}  # never HTTP/1.0, which GKE answers with 426
    assert all(body["stream"] and body["stream_options"] == {"include_usage": True} for body in stub.bodies)
    assert result["summary"]["requests"] == 40 and result["summary"]["success_rate"] == 1.0


def test_chat_endpoint_reads_delta_content(server):
    result = load.run(config(server, endpoint="chat", max_requests_per_step=3))
    assert result["steps"][0]["successful"] == 3
    assert result["records"][0]["output_tokens"] == 4


def test_failures_are_counted_by_class_and_kept_out_of_latency(server, stub):
    stub.fail_every = 4
    result = load.run(config(server, max_requests_per_step=20))
    step = result["steps"][0]
    assert step["failed"] == 5 and step["successful"] == 15
    assert step["success_rate"] == 0.75
    assert step["errors"] == {"http_503": 5}
    assert "no healthy upstream" in step["error_examples"]["http_503"]
    assert step["e2e_ms"]["count"] == 15


def test_connection_refused_is_classified():
    result = load.run(config("http://127.0.0.1:9", max_requests_per_step=2))
    assert result["steps"][0]["errors"] == {"connection_error": 2}
    assert result["summary"]["success_rate"] == 0.0


def test_poisson_rate_with_duration_and_warmup(server):
    result = load.run(config(server, load_model="poisson", request_rates=[40.0], warmup_seconds=0.2,
                             duration_seconds=1.0, max_requests_per_step=None))
    step = result["steps"][0]
    assert step["request_rate"] == 40.0
    # Arrivals are random: only the order of magnitude is a property of the generator.
    assert 10 <= step["requests"] <= 100
    assert all(r["start_s"] >= 0.2 - 0.05 for r in result["records"])
    assert all("queue_delay_s" in r for r in result["records"])


def test_shared_prefix_workload_reports_cache_hit_rate_and_share(server, stub):
    result = load.run(config(server, workload="shared_prefix", shared_prefix_tokens=64, prefix_groups=2,
                             warmup_seconds=0.05, metrics_urls=[server]))
    cache = result["steps"][0]["cache"]
    assert cache["hit_rate"] > 0.5
    assert cache["replicas"][server]["request_share"] == 1.0
    assert result["summary"]["cache_hit_rate"] == cache["hit_rate"]


def test_distinct_workload_shares_no_cache_block(server, stub):
    result = load.run(config(server, workload="distinct", prompt_tokens=40, metrics_urls=[server]))
    assert result["steps"][0]["cache"]["hit_rate"] == 0.0


def test_unreachable_metrics_endpoint_is_reported_not_fatal(server):
    result = load.run(config(server, max_requests_per_step=2, metrics_urls=["http://127.0.0.1:9"]))
    cache = result["steps"][0]["cache"]
    assert cache["hit_rate"] is None and "127.0.0.1:9" in next(iter(cache["errors"]))
    assert result["steps"][0]["successful"] == 2


def test_prompt_sources():
    cfg = config("http://x", workload="shared_prefix", shared_prefix_tokens=40, prefix_groups=2)
    prompts = workload.PromptSource(cfg)
    generated = [prompts.next_prompt() for _unused in range(40)]
    prefixes = {prompt.split(" Question")[0] for prompt in generated}
    assert len(prefixes) == 2
    assert all(len(prefix.split()) > workload.KV_BLOCK_TOKENS for prefix in prefixes)
    assert len(set(generated)) == 40  # the question after the prefix is unique
    distinct = workload.PromptSource(config("http://x"))
    a, b = distinct.next_prompt(), distinct.next_prompt()
    assert a.split()[:2] != b.split()[:2]


@pytest.mark.parametrize("overrides, message", [
    ({"workload": "shared_prefix", "shared_prefix_tokens": 16}, "shared_prefix_tokens must be longer than one 16"),
    ({"concurrency": [0]}, "concurrency entries must be positive integers"),
    ({"load_model": "poisson", "request_rates": []}, "request_rates must list at least one step"),
    ({"load_model": "closed"}, "load_model must be one of"),
    ({"base_url": "127.0.0.1:8000"}, "base_url must start with http"),
    ({"max_requests_per_step": None, "duration_seconds": 0}, "set duration_seconds or max_requests_per_step"),
    ({"max_tokens": True}, "max_tokens must be a positive whole number"),
    ({"warmup_seconds": -1}, "warmup_seconds must be a non-negative number"),
])
def test_bad_settings_name_the_option(overrides, message):
    with pytest.raises(workload.BenchmarkConfigError, match=message):
        config("http://127.0.0.1:1", **overrides)


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stats.percentile(values, 50) == 3.0
    assert stats.percentile(values, 90) == pytest.approx(4.6)
    assert stats.percentile(values, 99) == pytest.approx(4.96)
    assert stats.percentile([7.0], 95) == 7.0
    assert stats.percentile([], 50) is None


def test_distribution_in_milliseconds():
    dist = stats.distribution_ms([0.1, 0.2, None, 0.3])
    assert dist["count"] == 3
    assert dist["p50"] == pytest.approx(200.0) and dist["mean"] == pytest.approx(200.0)
    assert dist["min"] == pytest.approx(100.0) and dist["max"] == pytest.approx(300.0)


def test_summary_of_records_uses_successes_for_throughput():
    records = [
        {"ok": True, "start_s": 0.0, "e2e_s": 1.0, "ttft_s": 0.1, "itl_s": [0.3, 0.3, 0.3], "output_tokens": 4,
         "error": None, "error_detail": None},
        {"ok": True, "start_s": 1.0, "e2e_s": 1.0, "ttft_s": 0.2, "itl_s": [0.2], "output_tokens": 2,
         "error": None, "error_detail": None},
        {"ok": False, "start_s": 0.5, "e2e_s": 0.1, "ttft_s": None, "itl_s": [], "output_tokens": 0,
         "error": "timeout", "error_detail": None},
    ]
    step = stats.summarize_step(records, {"concurrency": 2}, window_start=0.0)
    assert step["duration_s"] == pytest.approx(2.0)
    assert step["requests_per_s"] == pytest.approx(1.0)
    assert step["output_tokens_per_s"] == pytest.approx(3.0)
    assert step["success_rate"] == pytest.approx(2 / 3)
    assert step["tpot_ms"]["p50"] == pytest.approx(550.0)  # median of (1.0-0.1)/3=300 ms and (1.0-0.2)/1=800 ms
    assert step["errors"] == {"timeout": 1}


def test_prometheus_parsing_and_cache_deltas():
    text = (
        "# TYPE vllm:prefix_cache_hits_total counter\n"
        'vllm:prefix_cache_hits_total{engine="0"} 10\n'
        'vllm:prefix_cache_hits_total{engine="1"} 5\n'
        "vllm:prefix_cache_queries_total 100\n"
        'vllm:request_success_total{finished_reason="stop"} 3\n'
        "garbage line\n"
    )
    counters = metrics.replica_counters(metrics.parse_prometheus(text))
    assert counters == {"prefix_cache_hits": 15.0, "prefix_cache_queries": 100.0, "requests": 3.0}
    before = {"a": counters, "b": {"prefix_cache_hits": 0.0, "prefix_cache_queries": 0.0, "requests": 0.0}}
    after = {"a": {"prefix_cache_hits": 45.0, "prefix_cache_queries": 200.0, "requests": 9.0},
             "b": {"prefix_cache_hits": 10.0, "prefix_cache_queries": 100.0, "requests": 2.0}}
    report = metrics.cache_report(before, after)
    assert report["hit_rate"] == pytest.approx(40.0 / 200.0)
    assert report["replicas"]["a"]["hit_rate"] == pytest.approx(0.3)
    assert report["replicas"]["a"]["request_share"] == pytest.approx(0.75)
    assert report["replicas"]["b"]["request_share"] == pytest.approx(0.25)
