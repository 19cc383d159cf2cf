"""The simulated vLLM replica: latency model, prefix-cache accounting, metrics and the OpenAI HTTP surface."""
import asyncio
import json

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from localcluster import tokens, vllm_sim
from localcluster.vllm_sim import PROFILES, Engine, PrefixCache, SimConfig, scaled_profile
from tests.unit.vllm_sim_helpers import SHARED_PREFIX as SHARED  # 64 tokens: four full 16-token blocks
from tests.unit.vllm_sim_helpers import run_requests


def t4_config(**overrides):
    # vLLM 0.11 runs V1 on a T4 (V0 is gone), so these tests see V1's token counters.
    values = {"served_model_names": ["/mnt/models"], "accelerator": "nvidia-tesla-t4", "dtype": "half",
              "max_model_len": 2048, "gpu_memory_utilization": 0.75, "vllm_version": "0.11.0"}
    return SimConfig(**{**values, **overrides})


# ---------------------------------------------------------------- latency model

def test_decode_step_gets_slower_as_the_batch_grows():
    engine = Engine.__new__(Engine)
    engine.profile = PROFILES["nvidia-tesla-t4"]
    single, batch32 = engine.step_seconds(1, 0), engine.step_seconds(32, 0)
    assert batch32 > single
    assert batch32 / 32 < single  # but batching still raises throughput per token


def test_prefill_cost_is_proportional_to_uncached_tokens():
    engine = Engine.__new__(Engine)
    engine.profile = PROFILES["nvidia-tesla-t4"]
    base = engine.step_seconds(4, 0)
    assert engine.step_seconds(4, 1000) - base == pytest.approx(2 * (engine.step_seconds(4, 500) - base))


def test_tpu_slice_is_faster_than_t4_and_tensor_parallelism_helps():
    t4, tpu = PROFILES["nvidia-tesla-t4"], PROFILES["tpu-v6e-slice"]
    assert tpu.decode_base_s < t4.decode_base_s and tpu.prefill_per_token_s < t4.prefill_per_token_s
    assert scaled_profile(tpu, 1).decode_base_s > tpu.decode_base_s  # the v6e-4 numbers assume TP=4


def test_kv_cache_budget_follows_gpu_memory_utilization():
    assert t4_config(gpu_memory_utilization=0.9).kv_cache_blocks() > t4_config().kv_cache_blocks() > 0


# ---------------------------------------------------------------- start-up checks

@pytest.mark.parametrize(("overrides", "message"), [
    ({"dtype": "bfloat16"}, "Bfloat16 is only supported on GPUs with compute capability of at least 8.0"),
    ({"tensor_parallel_size": 4}, "please set tensor_parallel_size (4) to less than max local gpu count (1)"),
    ({"max_model_len": 65536}, "User-specified max_model_len (65536) is greater than the derived max_model_len"),
    ({"gpu_memory_utilization": 0.3}, "No available memory for the cache blocks"),
])
def test_startup_fails_as_vllm_does(overrides, message):
    with pytest.raises(vllm_sim.EngineStartupError) as err:
        vllm_sim.validate_startup(t4_config(**overrides))
    assert message in err.value.log
    assert err.value.exit_code == 1


def test_seed_gpu_settings_start():
    vllm_sim.validate_startup(t4_config())  # --dtype=half --max-model-len=2048 --gpu-memory-utilization=0.75


# ---------------------------------------------------------------- prefix cache

def test_shared_prefix_hits_whole_blocks_only():
    cache = PrefixCache(100)
    first = tokens.tokenize(SHARED + " first question here")
    cache.insert(tokens.block_hashes(first))
    second = tokens.tokenize(SHARED + " another question")
    assert cache.cached_tokens(tokens.block_hashes(second), len(second), 16) == 64


def test_identical_prompt_recomputes_its_last_token():
    cache = PrefixCache(100)
    prompt = tokens.tokenize(SHARED)  # exactly 4 blocks
    cache.insert(tokens.block_hashes(prompt))
    assert cache.cached_tokens(tokens.block_hashes(prompt), len(prompt), 16) == 48


def test_least_recently_used_blocks_are_evicted():
    cache = PrefixCache(4)
    old = tokens.tokenize(SHARED + " x")
    cache.insert(tokens.block_hashes(old))
    cache.insert(tokens.block_hashes(tokens.tokenize(" ".join(f"other{i}" for i in range(64)))))
    assert len(cache) == 4
    assert cache.cached_tokens(tokens.block_hashes(old), len(old), 16) == 0


def _sample(engine, name):
    for family in text_string_to_metric_families(engine.metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not exposed")


def test_cache_counters_are_in_tokens():
    async def scenario():
        engine = Engine(t4_config(zero_latency=True))
        engine.start()
        try:
            first, second = await run_requests(engine, [SHARED + " question one", SHARED + " question two"])
        finally:
            await engine.stop()
        return engine, first, second

    engine, first, second = asyncio.run(scenario())
    assert _sample(engine, "vllm:prefix_cache_queries_total") == first.prompt_len + second.prompt_len
    assert _sample(engine, "vllm:prefix_cache_hits_total") == 64
    assert _sample(engine, "vllm:prompt_tokens_total") == first.prompt_len + second.prompt_len
    assert _sample(engine, "vllm:generation_tokens_total") == 4


def test_prefix_caching_can_be_switched_off():
    async def scenario():
        engine = Engine(t4_config(zero_latency=True, enable_prefix_caching=False))
        engine.start()
        try:
            await run_requests(engine, [SHARED + " a", SHARED + " b"])
        finally:
            await engine.stop()
        return engine

    engine = asyncio.run(scenario())
    assert _sample(engine, "vllm:prefix_cache_hits_total") == 0
    assert _sample(engine, "vllm:prefix_cache_queries_total") == 0


def test_requests_beyond_max_num_seqs_wait_in_the_queue():
    async def scenario():
        engine = Engine(t4_config(max_num_seqs=1))
        engine.start()
        seqs = [vllm_sim.Sequence(10, [], 5) for _ in range(3)]
        for seq in seqs:
            engine.submit(seq)
        await seqs[0].events.get()  # the first request produced its first token
        observed = (_sample(engine, "vllm:num_requests_running"), _sample(engine, "vllm:num_requests_waiting"))
        for seq in seqs:
            while await seq.events.get() is not None:
                pass
        await engine.stop()
        return observed, engine

    (running, waiting), engine = asyncio.run(scenario())
    assert (running, waiting) == (1, 2)
    assert _sample(engine, "vllm:num_requests_waiting") == 0


def test_metrics_exposition_has_vllm_names_and_histograms():
    engine = Engine(t4_config())
    families = {f.name: f.type for f in text_string_to_metric_families(engine.metrics.exposition().decode())}
    assert families["vllm:prefix_cache_queries"] == "counter"
    assert families["vllm:prefix_cache_hits"] == "counter"
    assert families["vllm:num_requests_running"] == "gauge"
    assert families["vllm:num_requests_waiting"] == "gauge"
    for name in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"):
        assert families[name] == "histogram"


# ---------------------------------------------------------------- HTTP surface

@pytest.fixture
def server_url(unused_port):
    """A replica on 127.0.0.1 in a background event loop (zero latency: tests assert behaviour, not time)."""
    import threading

    loop = asyncio.new_event_loop()
    server = vllm_sim.VllmServer(t4_config(zero_latency=True), log=lambda line: None)
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start("127.0.0.1", unused_port))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{unused_port}"
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(method, url, body=None):
    async def go():
        async with aiohttp.ClientSession() as session, session.request(method, url, json=body) as response:
            return response.status, await response.text(), response.headers.get("Content-Type", "")

    return asyncio.run(go())


def test_models_lists_the_served_name(server_url):
    status, body, _ = _request("GET", f"{server_url}/v1/models")
    data = json.loads(body)
    assert status == 200
    assert [m["id"] for m in data["data"]] == ["/mnt/models"]
    assert data["data"][0]["max_model_len"] == 2048


def test_health_is_empty_200_and_root_is_404(server_url):
    assert _request("GET", f"{server_url}/health")[:2] == (200, "")
    assert _request("GET", f"{server_url}/")[0] == 404


def test_unknown_model_is_404_with_vllms_message(server_url):
    status, body, _ = _request("POST", f"{server_url}/v1/completions",
                               {"model": "Qwen/Qwen2.5-3B-Instruct", "prompt": "hi"})
    assert status == 404
    assert json.loads(body) == {"object": "error", "message": "The model `Qwen/Qwen2.5-3B-Instruct` does not exist.",
                                "type": "NotFoundError", "param": None, "code": 404}


def test_prompt_longer_than_max_model_len_is_400(server_url):
    status, body, _ = _request("POST", f"{server_url}/v1/completions",
                               {"model": "/mnt/models", "prompt": "word " * 2000, "max_tokens": 100})
    assert status == 400
    assert "maximum context length is 2048 tokens" in json.loads(body)["message"]


def test_completion_has_usage_and_is_deterministic(server_url):
    body = {"model": "/mnt/models", "prompt": "Explain Kubernetes in one sentence:", "max_tokens": 30,
            "ignore_eos": True}
    first = json.loads(_request("POST", f"{server_url}/v1/completions", body)[1])
    second = json.loads(_request("POST", f"{server_url}/v1/completions", body)[1])
    assert first["object"] == "text_completion"
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["usage"]["completion_tokens"] == 30
    assert first["usage"]["completion_tokens"] == len(tokens.tokenize(first["choices"][0]["text"]))
    assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + 30


def test_chat_stream_is_sse_ending_with_done(server_url):
    body = {"messages": [{"role": "user", "content": "What is Kubernetes?"}], "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}}
    status, text, content_type = _request("POST", f"{server_url}/v1/chat/completions", body)
    events = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    assert status == 200 and content_type.startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len(tokens.tokenize(content)) == chunks[-1]["usage"]["completion_tokens"]
    assert chunks[-2]["choices"][0]["finish_reason"] in ("length", "stop")


def test_chat_completion_shape(server_url):
    status, body, _ = _request("POST", f"{server_url}/v1/chat/completions",
                               {"model": "/mnt/models", "messages": [{"role": "user", "content": "hello"}],
                                "max_tokens": 8})
    data = json.loads(body)
    assert status == 200 and data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["role"] == "assistant"
    assert data["usage"]["completion_tokens"] <= 8


def test_metrics_endpoint_counts_served_requests(server_url):
    _request("POST", f"{server_url}/v1/completions", {"prompt": SHARED + " one", "max_tokens": 3})
    _request("POST", f"{server_url}/v1/completions", {"prompt": SHARED + " two", "max_tokens": 3})
    status, text, _ = _request("GET", f"{server_url}/metrics")
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
               if not s.labels.get("le")}
    assert status == 200
    assert samples["vllm:prefix_cache_hits_total"] == 64
    assert samples["vllm:e2e_request_latency_seconds_count"] == 2
    assert samples["vllm:time_to_first_token_seconds_count"] == 2


def test_standalone_defaults_serve_mnt_models():
    config, host, port = vllm_sim.parse_standalone_args(["--port", "8123", "--zero-latency"])
    assert (config.served_model_names, host, port, config.zero_latency) == (["/mnt/models"], "127.0.0.1", 8123, True)
    config, _, _ = vllm_sim.parse_standalone_args(["--served-model-name", "qwen", "--accelerator", "tpu-v6e-slice",
                                                   "--tensor-parallel-size", "4"])
    assert config.served_model_names == ["qwen"] and config.devices == 4
