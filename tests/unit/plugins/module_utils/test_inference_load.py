"""Load generator against a small in-process OpenAI-compatible server."""
import asyncio
import json
import threading

import pytest
from aiohttp import web

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_load as load
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
