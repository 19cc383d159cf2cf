"""A simulated vLLM replica: vLLM's OpenAI-compatible HTTP surface over a modelled engine.

What is real: the HTTP API shapes (vLLM 0.8-0.12), the error bodies, ``/metrics`` with the metric names the
image's vLLM release exposes on its accelerator (V0 or V1 engine, from the collection's version table
plugins/module_utils/vllm_versions.py; exposed by prometheus_client, as vLLM does), continuous batching with a
waiting queue and ``--max-num-seqs``, chunked prefill, and an LRU prefix cache of ``--block-size`` token blocks whose
hits/queries are counted in tokens as vLLM V1 counts them. What is modelled: the time each engine step
takes (``PROFILES``), and the generated text (deterministic words seeded by the prompt).

Request latencies are real time (never scaled by LOCALCLUSTER_TIME_SCALE) so benchmark numbers mean
something; ``--zero-latency`` answers at once (a baseline server for benchmarks).

Standalone: ``python -m localcluster.vllm_sim --host 127.0.0.1 --port 8000 --accelerator nvidia-tesla-t4
--served-model-name X [any vLLM flag]``.
"""
import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field, replace

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.utils import floatToGoString

from localcluster import tokens as tok
from localcluster import vllm_flags

DEFAULT_MODEL_PATH = "/mnt/models"
MODEL_MAX_POSITION_EMBEDDINGS = 32768  # Qwen2.5-3B-Instruct config.json (the patterns' model)


@dataclass(frozen=True)
class AcceleratorProfile:
    """Modelled cost of one engine step for a ~3B fp16/bf16 model (Qwen2.5-3B-Instruct) at ``reference_tp``.

    step time = decode_base_s + decode_per_seq_s * decoding sequences + prefill_per_token_s * prefilled tokens.
    """

    name: str
    prefill_per_token_s: float
    decode_base_s: float
    decode_per_seq_s: float
    memory_gb_per_device: float
    startup_s: float  # model load (+ CUDA graph capture / XLA compile) before the port opens
    reference_tp: int = 1
    max_num_batched_tokens: int = 2048
    supports_bf16: bool = True


# MODELLED, NOT MEASURED. How the numbers were chosen (weights of a 3B model: ~6.2 GB in 16-bit):
# - T4: decode is memory-bound: 6.2 GB / 320 GB/s ~ 19 ms per step, + kernel overheads -> 22 ms; prefill at
#   ~17 effective fp16 TFLOPs for 6 GFLOP/token -> 0.35 ms/token (matches the rhaii GPU note "TTFT 46 ms"
#   for a ~130-token uncached prompt); the per-sequence term makes batch 32 ~1.9x slower per step than batch
#   1, as T4 turns compute-bound. Start-up 2.5 min (seed: "GPU init (1-2 min)" + load + CUDA graphs).
# - TPU v6e-4 with TP=4: 4 x 1.6 TB/s HBM -> ~1 ms of weight reads; with XLA/TP overheads ~7.5 ms per
#   step, which reproduces the seed's ~390 ms for 50 tokens at concurrency 1 (P1 benchmark, min latency).
#   Start-up 4.5 min: the seed's TPU pods were Ready 4-6 min after start (TPU init + XLA compile 2-3 min) and
#   survive its liveness probe (240 s + 5 x 30 s); longer would crash-loop them. T4 latency ~3x TPU's (seed 3.5).
# - L4/A100 and CPU rows scale the T4 row by memory bandwidth (300/1555 GB/s) and are rougher still.
PROFILES = {
    "nvidia-tesla-t4": AcceleratorProfile("nvidia-tesla-t4", 0.00035, 0.022, 0.0006, 16, 150, supports_bf16=False),
    "nvidia-l4": AcceleratorProfile("nvidia-l4", 0.00015, 0.021, 0.0003, 24, 150),
    "nvidia-tesla-a100": AcceleratorProfile("nvidia-tesla-a100", 0.00004, 0.0055, 0.00008, 40, 90),
    "tpu-v6e-slice": AcceleratorProfile("tpu-v6e-slice", 0.00003, 0.0075, 0.00005, 32, 270, reference_tp=4,
                                        max_num_batched_tokens=8192),
    "cpu": AcceleratorProfile("cpu", 0.002, 0.12, 0.004, 16, 60),
    "zero": AcceleratorProfile("zero", 0.0, 0.0, 0.0, 80, 0),
}
WEIGHTS_GB = 6.2
ACTIVATION_RESERVE_GB = 1.0
KV_BYTES_PER_TOKEN = 36 * 2 * 2 * 128 * 2  # layers x (K,V) x KV heads x head dim x 2 bytes (Qwen2.5-3B)
REQUEST_OVERHEAD_S = 0.002  # HTTP parsing, tokenisation and detokenisation around the engine


def scaled_profile(profile, tensor_parallel_size):
    """More devices split the work: step costs shrink sub-linearly (communication), memory adds up."""
    factor = (profile.reference_tp / max(tensor_parallel_size, 1)) ** 0.85
    return replace(profile, prefill_per_token_s=profile.prefill_per_token_s * factor,
                   decode_base_s=profile.decode_base_s * factor, decode_per_seq_s=profile.decode_per_seq_s * factor)


class EngineStartupError(Exception):
    """vLLM fails before it opens its port; ``log`` is what it prints (last line is the exception)."""

    def __init__(self, log, exit_code=1):
        super().__init__(log)
        self.log = log
        self.exit_code = exit_code


@dataclass
class SimConfig:
    """Everything a replica needs; built from vLLM's parsed command line."""

    served_model_names: list
    model: str = DEFAULT_MODEL_PATH
    accelerator: str = "nvidia-tesla-t4"
    devices: int = 1  # GPUs / TPU chips the container got
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    block_size: int = 16
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.9
    vllm_version: str = "0.10.1.1"
    # "v0" or "v1" and the metric names on /metrics: from (vllm_version, accelerator) through the collection's
    # version table (vllm_flags.versions; vLLM's _is_v1_supported_oracle, vllm/engine/metrics.py,
    # vllm/v1/metrics/loggers.py of the release). None: derived in __post_init__.
    engine: str | None = None
    exposed_metrics: frozenset | None = None
    zero_latency: bool = False
    access_log: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.engine is None:
            self.engine = vllm_flags.versions.engine_for(self.vllm_version, self.accelerator)
        if self.exposed_metrics is None:
            self.exposed_metrics = vllm_flags.versions.metrics_for(self.vllm_version, self.accelerator)

    @classmethod
    def from_vllm_args(cls, args, accelerator, devices=1, vllm_version="0.10.1.1", zero_latency=False):
        table = vllm_flags.versions
        engine = table.engine_for(vllm_version, accelerator)
        hidden = getattr(args, "show_hidden_metrics_for_version", None)
        show_hidden = hidden is not None and table.shows_hidden_metrics(
            vllm_version, [f"--show-hidden-metrics-for-version={hidden}"])
        prefix_caching = args.enable_prefix_caching
        if engine == "v0" and getattr(args, "enable_prefix_caching_given", None) is None:
            # V0 leaves prefix caching off unless asked (v0.8.4 vllm/engine/arg_utils.py: enable_prefix_caching
            # None is only turned on by _set_default_args_v1).
            prefix_caching = False
        return cls(served_model_names=list(args.served_model_name or [args.model]), model=args.model,
                   accelerator=accelerator, devices=devices, tensor_parallel_size=args.tensor_parallel_size,
                   dtype=args.dtype, max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
                   max_num_batched_tokens=args.max_num_batched_tokens, block_size=args.block_size,
                   enable_prefix_caching=prefix_caching,
                   gpu_memory_utilization=args.gpu_memory_utilization, vllm_version=vllm_version, engine=engine,
                   exposed_metrics=table.metrics_for(vllm_version, accelerator, show_hidden=show_hidden),
                   zero_latency=zero_latency, access_log=not args.disable_uvicorn_access_log, seed=args.seed or 0)

    @property
    def profile(self):
        base = PROFILES["zero"] if self.zero_latency else PROFILES.get(self.accelerator, PROFILES["nvidia-tesla-t4"])
        return scaled_profile(base, self.tensor_parallel_size)

    @property
    def effective_max_model_len(self):
        return self.max_model_len or MODEL_MAX_POSITION_EMBEDDINGS

    def kv_cache_blocks(self):
        """KV-cache blocks that fit: device memory x utilisation, minus weights and activations."""
        profile = PROFILES.get(self.accelerator, PROFILES["nvidia-tesla-t4"])
        total_gb = profile.memory_gb_per_device * max(self.tensor_parallel_size, 1) * self.gpu_memory_utilization
        free_bytes = (total_gb - WEIGHTS_GB - ACTIVATION_RESERVE_GB) * 1024 ** 3
        return int(free_bytes // (KV_BYTES_PER_TOKEN * self.block_size))


def _log_prefix(source="api_server.py", line=0):
    return f"INFO {time.strftime('%m-%d %H:%M:%S')} [{source}:{line}]"


def validate_startup(config):
    """The checks vLLM makes while loading; raises EngineStartupError with vLLM's message."""
    def fail(message):
        raise EngineStartupError(f"{_log_prefix('core.py', 515)} Initializing a {config.engine.upper()} LLM engine "
                                 f"(v{config.vllm_version})"
                                 f"\nERROR {time.strftime('%m-%d %H:%M:%S')} [core.py:700] EngineCore failed to start."
                                 f"\n{message}\n")

    profile = PROFILES.get(config.accelerator)
    if config.tensor_parallel_size > config.devices:
        fail(f"AssertionError: please set tensor_parallel_size ({config.tensor_parallel_size}) to less than max "
             f"local gpu count ({config.devices})")
    if config.dtype == "bfloat16" and profile is not None and not profile.supports_bf16:
        fail("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your Tesla T4 "
             "GPU has compute capability 7.5. You can use float16 instead by explicitly setting the `dtype` flag in "
             "CLI, for example: --dtype=half.")
    if config.max_model_len and config.max_model_len > MODEL_MAX_POSITION_EMBEDDINGS:
        fail(f"ValueError: User-specified max_model_len ({config.max_model_len}) is greater than the derived "
             f"max_model_len (max_position_embeddings={MODEL_MAX_POSITION_EMBEDDINGS} or model_max_length=None in "
             "model's config.json). This may lead to incorrect model outputs or CUDA errors. To allow overriding "
             "this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1")
    if config.kv_cache_blocks() <= 0:
        fail("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
             "initializing the engine.")
    blocks_needed = -(-config.effective_max_model_len // config.block_size)
    if config.kv_cache_blocks() < blocks_needed:
        needed_gib = blocks_needed * config.block_size * KV_BYTES_PER_TOKEN / 2 ** 30
        fail(f"ValueError: To serve at least one request with the models's max seq len "
             f"({config.effective_max_model_len}), ({needed_gib:.2f} GiB KV cache is needed, which is larger "
             "than the available KV cache memory. Try increasing "
             "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.")


def startup_log_lines(config, host, port):
    """What vLLM prints from start to "Application startup complete" (enough to recognise a healthy start)."""
    p = _log_prefix
    names = " ".join(config.served_model_names)
    # V0 fallback below compute capability 8.0: v0.8.4 vllm/engine/arg_utils.py _raise_or_fallback;
    # "Initializing a V0 LLM engine" is v0.8.4 vllm/engine/llm_engine.py.
    fallback = ([f"WARNING {time.strftime('%m-%d %H:%M:%S')} [arg_utils.py:1722] Compute Capability < 8.0 is not "
                 "supported by the V1 Engine. Falling back to V0. "] if config.engine == "v0" else [])
    return [
        f"{p('api_server.py', 1090)} vLLM API server version {config.vllm_version}",
        *fallback,
        f"{p('config.py', 717)} This model supports multiple tasks: {{'generate'}}. Defaulting to 'generate'.",
        f"{p('core.py' if config.engine == 'v1' else 'llm_engine.py', 58 if config.engine == 'v1' else 244)} "
        f"Initializing a {config.engine.upper()} LLM engine (v{config.vllm_version}) with config: "
        f"model='{config.model}',"
        f" dtype={'torch.float16' if config.dtype in ('half', 'float16') else 'torch.bfloat16'}, "
        f"max_seq_len={config.effective_max_model_len}, tensor_parallel_size={config.tensor_parallel_size}, "
        f"served_model_name={names}, enable_prefix_caching={config.enable_prefix_caching}",
        f"{p('gpu_model_runner.py', 1329)} Model loading took {WEIGHTS_GB:.4f} GiB and 9.81 seconds",
        f"{p('kv_cache_utils.py', 634)} GPU KV cache size: {config.kv_cache_blocks() * config.block_size:,} tokens",
        f"{p('api_server.py', 1024)} Starting vLLM API server on http://{host}:{port}",
        f"{p('launcher.py', 26)} Available routes are:",
        *(f"{p('launcher.py', 34)} Route: {route}, Methods: {methods}" for route, methods in _ROUTES),
        "INFO:     Started server process [1]",
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
    ]


_ROUTES = (("/health", "GET"), ("/metrics", "GET"), ("/ping", "GET, POST"), ("/version", "GET"),
           ("/v1/models", "GET"), ("/v1/completions", "POST"), ("/v1/chat/completions", "POST"))


class PrefixCache:
    """LRU set of KV blocks, identified by chained block hashes (localcluster.tokens)."""

    def __init__(self, capacity_blocks):
        self.capacity = max(capacity_blocks, 0)
        self._blocks = collections.OrderedDict()

    def __len__(self):
        return len(self._blocks)

    def cached_tokens(self, hashes, prompt_len, block_size):
        """Tokens served from the cache: the longest cached prefix of full blocks.

        As in vLLM V1, at least the last prompt token is always recomputed, so a fully cached prompt
        counts ``prompt_len - 1`` rounded down to whole blocks.
        """
        max_blocks = max(prompt_len - 1, 0) // block_size
        hit = 0
        for block in hashes[:max_blocks]:
            if block not in self._blocks:
                break
            self._blocks.move_to_end(block)
            hit += 1
        return hit * block_size

    def insert(self, hashes):
        for block in hashes:
            self._blocks[block] = True
            self._blocks.move_to_end(block)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)


@dataclass(eq=False)  # identity semantics: sequences are dict keys
class Sequence:
    """One request inside the engine."""

    prompt_len: int
    block_hashes: list
    max_output: int
    arrival: float = field(default_factory=time.monotonic)
    cached_tokens: int = 0
    prefilled: int = 0
    generated: int = 0
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    events: asyncio.Queue = field(default_factory=asyncio.Queue)  # one item per token, None at the end

    @property
    def prefill_remaining(self):
        return self.prompt_len - self.cached_tokens - self.prefilled


class _Absent:
    """A metric this release does not expose: updates go nowhere."""

    def labels(self, **_labels):
        return self

    def inc(self, *_args):
        pass

    set = observe = inc


_ABSENT = _Absent()


class _Family:
    """One metric family of the registry and its last rendered text (re-rendered only after an update).

    The text is what prometheus_client 0.26.0's ``generate_latest`` writes for this collector (its part of
    generate_latest(registry): the registry yields its collectors' families in registration order and the format
    has no cross-family state), with each sample's escaped ``name{labels} `` computed once instead of at every
    scrape (sample_line in prometheus_client/exposition.py); the unit tests compare it byte for byte.
    """

    __slots__ = ("collector", "version", "rendered", "_prefixes")

    def __init__(self, collector):
        self.collector, self.version, self.rendered, self._prefixes = collector, 0, (None, b""), {}

    def text(self):
        version, text = self.rendered
        if version != self.version:
            version, text = self.version, self.render()
            self.rendered = (version, text)
        return text

    def render(self):
        output = []
        for metric in self.collector.collect():
            if metric.type not in ("counter", "gauge", "histogram"):
                return generate_latest(self.collector)
            doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            mname = metric.name + "_total" if metric.type == "counter" else metric.name
            output.append(f"# HELP {om_exposition.escape_metric_name(mname)} {doc}\n"
                          f"# TYPE {om_exposition.escape_metric_name(mname)} {metric.type}\n")
            om_samples = {}
            for sample in metric.samples:
                if sample.timestamp is not None:
                    return generate_latest(self.collector)
                key = (sample.name, tuple(sample.labels.items()))
                prefix = self._prefixes.get(key)
                if prefix is None:
                    prefix = self._prefixes[key] = _sample_prefix(sample)
                line = f"{prefix}{floatToGoString(sample.value)}\n"
                for suffix in ("_created", "_gsum", "_gcount"):
                    if sample.name == metric.name + suffix:
                        om_samples.setdefault(suffix, []).append(line)
                        break
                else:
                    output.append(line)
            for suffix, lines in sorted(om_samples.items()):
                output.append(f"# HELP {om_exposition.escape_metric_name(metric.name + suffix)} {doc}\n"
                              f"# TYPE {om_exposition.escape_metric_name(metric.name + suffix)} gauge\n")
                output.extend(lines)
        return "".join(output).encode("utf-8")


def _sample_prefix(sample):
    """``name{labels} `` of a sample as generate_latest's sample_line writes it (default escaping)."""
    name = om_exposition.escape_metric_name(sample.name)
    if not sample.labels:
        return f"{name} "
    escape = om_exposition._escape  # label values: sample_line's _escape(v, ALLOWUTF8, False)
    labels = ",".join(f'{om_exposition.escape_label_name(k)}="{escape(v, om_exposition.ALLOWUTF8, False)}"'
                      for k, v in sorted(sample.labels.items()))
    return f"{name}{{{labels}}} "


class _Tracked:
    """A metric (or labelled child) whose updates mark its family and its owner changed, so /metrics is re-used."""

    __slots__ = ("_metric", "_family", "_owner")

    def __init__(self, metric, family, owner):
        self._metric, self._family, self._owner = metric, family, owner

    def labels(self, **labels):
        return _Tracked(self._metric.labels(**labels), self._family, self._owner)

    def _changed(self):
        self._family.version += 1
        self._owner.version += 1

    def inc(self, *args):
        self._metric.inc(*args)
        self._changed()

    def set(self, value):
        self._metric.set(value)
        self._changed()

    def observe(self, value):
        self._metric.observe(value)
        self._changed()


class Metrics:
    """vLLM's Prometheus metrics (buckets of vLLM V1), the names the release's engine exposes; one per replica."""

    TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
    TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                    40.0, 80.0)
    LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                       240.0, 480.0, 960.0, 1920.0, 7680.0)
    TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)

    def __init__(self, config, kv_blocks):
        self.registry = CollectorRegistry()
        # Every update goes through _Tracked and bumps version; exposition() re-renders only the families that
        # changed. The EPP scrapes every endpoint every 50 ms (gateway-api-inference-extension
        # pkg/epp/server/runserver.go, DefaultRefreshMetricsInterval) and prometheus_client's generate_latest costs
        # milliseconds per call (~200 samples), so each replica rendered the whole text 20 times a second.
        self.version = 0
        self._rendered = (None, b"")
        self._families = []  # registration order = generate_latest(registry) order
        # V0 labels its metrics with model_name only (v0.8.4 vllm/engine/metrics.py); V1 adds engine.
        self.labels = {"model_name": config.served_model_names[0], "engine": "0"}
        if config.engine == "v0":
            self.labels = {"model_name": config.served_model_names[0]}
        names = list(self.labels)
        exposed = config.exposed_metrics

        def metric(cls, name, doc, **kw):
            # Only what this release's engine exposes; a counter <name> is exposed as <name>_total.
            if exposed is not None and (name + "_total" if cls is Counter and not name.endswith("_total")
                                        else name) not in exposed:
                return _ABSENT
            extra = kw.pop("extra_labels", ())
            m = cls(name, doc, labelnames=names + list(extra), registry=self.registry, **kw)
            family = _Family(m)
            self._families.append(family)
            return _Tracked(m if extra else m.labels(**self.labels), family, self)

        # V0: vllm:gpu_prefix_cache_hit_rate, the block hit rate since start (hidden in 0.8/0.9, gone in 0.10).
        self.prefix_hit_rate = metric(Gauge, "vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.")
        self._hits = self._queries = 0

        self.running = metric(Gauge, "vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = metric(Gauge, "vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.gpu_cache_usage = metric(Gauge, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent "
                                      "usage.")
        self.kv_cache_usage = metric(Gauge, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prefix_queries = metric(Counter, "vllm:prefix_cache_queries", "Prefix cache queries, in terms of "
                                     "number of queried tokens.")
        self.prefix_hits = metric(Counter, "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of "
                                  "cached tokens.")
        self.preemptions = metric(Counter, "vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        self.prompt_tokens = metric(Counter, "vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = metric(Counter, "vllm:generation_tokens", "Number of generation tokens processed.")
        self.request_success = metric(Counter, "vllm:request_success", "Count of successfully processed requests.",
                                      extra_labels=("finished_reason",))
        self.ttft = metric(Histogram, "vllm:time_to_first_token_seconds", "Histogram of time to first token in "
                           "seconds.", buckets=self.TTFT_BUCKETS)
        self.tpot = metric(Histogram, "vllm:time_per_output_token_seconds", "Histogram of time per output token in "
                           "seconds.", buckets=self.TPOT_BUCKETS)
        self.itl = metric(Histogram, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in "
                          "seconds.", buckets=self.TPOT_BUCKETS)
        self.e2e = metric(Histogram, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in "
                          "seconds.", buckets=self.LATENCY_BUCKETS)
        self.queue_time = metric(Histogram, "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING "
                                 "phase for request.", buckets=self.LATENCY_BUCKETS)
        self.prefill_time = metric(Histogram, "vllm:request_prefill_time_seconds", "Histogram of time spent in "
                                   "PREFILL phase for request.", buckets=self.LATENCY_BUCKETS)
        self.decode_time = metric(Histogram, "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE "
                                  "phase for request.", buckets=self.LATENCY_BUCKETS)
        self.request_prompt_tokens = metric(Histogram, "vllm:request_prompt_tokens", "Number of prefill tokens "
                                            "processed.", buckets=self.TOKEN_BUCKETS)
        self.request_generation_tokens = metric(Histogram, "vllm:request_generation_tokens", "Number of generation "
                                                "tokens processed.", buckets=self.TOKEN_BUCKETS)
        info = Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                     labelnames=["block_size", "enable_prefix_caching", "gpu_memory_utilization", "num_gpu_blocks"],
                     registry=self.registry)
        info.labels(block_size=str(config.block_size), enable_prefix_caching=str(config.enable_prefix_caching),
                    gpu_memory_utilization=str(config.gpu_memory_utilization), num_gpu_blocks=str(kv_blocks)).set(1)
        self._families.append(_Family(info))  # never changes

    def observe_prefix(self, queried_tokens, hit_tokens):
        self.prefix_queries.inc(queried_tokens)
        self.prefix_hits.inc(hit_tokens)
        self._hits, self._queries = self._hits + hit_tokens, self._queries + queried_tokens
        if self._queries:
            self.prefix_hit_rate.set(self._hits / self._queries)

    def observe_finished(self, seq, finished_reason):
        now = time.monotonic()
        self.request_success.labels(finished_reason=finished_reason, **self.labels).inc()
        self.e2e.observe(now - seq.arrival)
        self.queue_time.observe((seq.scheduled_at or now) - seq.arrival)
        self.prefill_time.observe((seq.first_token_at or now) - (seq.scheduled_at or now))
        self.decode_time.observe(now - (seq.first_token_at or now))
        self.request_prompt_tokens.observe(seq.prompt_len)
        self.request_generation_tokens.observe(seq.generated)
        if seq.generated > 1:
            self.tpot.observe((now - seq.first_token_at) / (seq.generated - 1))

    def exposition(self):
        """generate_latest(registry), byte for byte; only the families updated since the last call are rendered."""
        version, text = self._rendered
        if version != self.version:
            version, text = self.version, b"".join(family.text() for family in self._families)
            self._rendered = (version, text)
        return text


class Engine:
    """Continuous batching: admit FCFS up to max_num_seqs, then run steps that prefill (chunked) and decode."""

    def __init__(self, config):
        self.config = config
        self.profile = config.profile
        self.kv_blocks = max(config.kv_cache_blocks(), 1)
        self.cache = PrefixCache(self.kv_blocks if config.enable_prefix_caching else 0)
        self.metrics = Metrics(config, self.kv_blocks)
        self.waiting = collections.deque()
        self.running = []
        self._wake = asyncio.Event()
        self._task = None

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self):
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def complete_now(self, seq):
        """--zero-latency: the whole request in one go (same cache accounting and metrics, no engine steps)."""
        now = time.monotonic()
        seq.scheduled_at = now
        if self.config.enable_prefix_caching:
            seq.cached_tokens = self.cache.cached_tokens(seq.block_hashes, seq.prompt_len, self.config.block_size)
            self.metrics.observe_prefix(seq.prompt_len, seq.cached_tokens)
        seq.prefilled = seq.prompt_len - seq.cached_tokens
        self.cache.insert(seq.block_hashes)
        self.metrics.prompt_tokens.inc(seq.prompt_len)
        for _ in range(seq.max_output):
            self._emit_token(seq, now)
        seq.events.put_nowait(None)

    def submit(self, seq):
        if self.config.zero_latency:
            self.complete_now(seq)
            return
        self.waiting.append(seq)
        self.metrics.waiting.set(len(self.waiting))
        self._wake.set()

    def cancel(self, seq):
        """The client went away: free the slot, as vLLM aborts the request."""
        if seq in self.waiting:
            self.waiting.remove(seq)
        if seq in self.running:
            self.running.remove(seq)
        self._update_gauges()

    def _update_gauges(self):
        self.metrics.running.set(len(self.running))
        self.metrics.waiting.set(len(self.waiting))
        used = sum(-(-(s.prompt_len + s.generated) // self.config.block_size) for s in self.running)
        self.metrics.gpu_cache_usage.set(min(used / self.kv_blocks, 1.0))
        self.metrics.kv_cache_usage.set(min(used / self.kv_blocks, 1.0))

    def _admit(self):
        now = time.monotonic()
        while self.waiting and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting.popleft()
            seq.scheduled_at = now
            if self.config.enable_prefix_caching:
                seq.cached_tokens = self.cache.cached_tokens(seq.block_hashes, seq.prompt_len, self.config.block_size)
                self.metrics.observe_prefix(seq.prompt_len, seq.cached_tokens)
            self.running.append(seq)
        self._update_gauges()

    def _plan_step(self):
        """(decoding sequences, {sequence: prefill tokens this step}) within the token budget."""
        budget = self.config.max_num_batched_tokens or self.profile.max_num_batched_tokens
        decoding = [s for s in self.running if s.prefill_remaining == 0]
        budget -= len(decoding)
        prefills = {}
        for seq in self.running:
            if seq.prefill_remaining > 0 and budget > 0:
                chunk = min(seq.prefill_remaining, budget)
                prefills[seq] = chunk
                budget -= chunk
        return decoding, prefills

    def step_seconds(self, decoding, prefill_tokens):
        profile = self.profile
        decode = profile.decode_base_s + profile.decode_per_seq_s * decoding if decoding else 0.0
        prefill = profile.prefill_per_token_s * prefill_tokens
        return decode + prefill + (profile.decode_base_s if prefill_tokens and not decoding else 0.0)

    async def _loop(self):
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
            self._admit()
            decoding, prefills = self._plan_step()
            await asyncio.sleep(self.step_seconds(len(decoding), sum(prefills.values())))
            self._finish_step(decoding, prefills)

    def _emit_token(self, seq, now):
        if seq.first_token_at is None:
            seq.first_token_at = now
            self.metrics.ttft.observe(now - seq.arrival)
        else:
            self.metrics.itl.observe(now - seq.last_token_at)
        seq.last_token_at = now
        seq.generated += 1
        self.metrics.generation_tokens.inc()
        seq.events.put_nowait(seq.generated)

    def _finish_step(self, decoding, prefills):
        now = time.monotonic()
        for seq, chunk in prefills.items():
            if seq not in self.running:
                continue
            seq.prefilled += chunk
            if seq.prefill_remaining == 0:  # the step that completes the prefill samples the first token
                self.cache.insert(seq.block_hashes)
                self.metrics.prompt_tokens.inc(seq.prompt_len)  # vLLM counts the whole prompt, cached or not
                self._emit_token(seq, now)
        for seq in decoding:
            if seq in self.running:
                self._emit_token(seq, now)
        for seq in [s for s in self.running if s.generated >= s.max_output]:
            self.running.remove(seq)
            seq.events.put_nowait(None)
        self._update_gauges()


# --- text ------------------------------------------------------------------------------------------

_WORDS = ("the", "model", "cluster", "node", "request", "token", "cache", "prefix", "replica", "gateway", "serving",
          "latency", "throughput", "kubernetes", "pod", "service", "inference", "batch", "memory", "accelerator",
          "is", "are", "a", "an", "of", "to", "and", "in", "for", "with", "that", "each", "when", "on", "runs",
          "uses", "keeps", "reads", "writes", "scales", "routes", "returns", "faster", "shared", "local", "new")


def generated_pieces(prompt, model, count):
    """``count`` output tokens (text pieces), the same for the same prompt and model."""
    rng = random.Random(hashlib.sha256(f"{model}\x00{prompt}".encode()).digest())
    pieces = []
    for i in range(count):
        if i and rng.random() < 0.08:
            pieces.append(rng.choice((",", ".")))
        else:
            word = rng.choice(_WORDS)
            pieces.append((" " if i else "") + (word.capitalize() if not i or pieces[-1] == "." else word))
    return pieces


def natural_length(prompt, model):
    """Where the model would emit EOS for this prompt (deterministic)."""
    rng = random.Random(hashlib.sha256(f"eos\x00{model}\x00{prompt}".encode()).digest())
    return rng.randint(24, 400)


def render_chat_prompt(messages):
    """Qwen2.5's chat template (ChatML) with the generation prompt: the text the engine tokenises."""
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        parts.append(f"<|im_start|>{message.get('role', 'user')}\n{content or ''}<|im_end|>\n")
    return "".join(parts) + "<|im_start|>assistant\n"


# --- HTTP ------------------------------------------------------------------------------------------

class RequestError(Exception):
    def __init__(self, message, status=400, err_type="BadRequestError"):
        super().__init__(message)
        self.status, self.err_type = status, err_type

    def response(self):
        body = {"object": "error", "message": str(self), "type": self.err_type, "param": None, "code": self.status}
        return web.json_response(body, status=self.status)


class VllmServer:
    """The HTTP server of one replica; ``log`` receives each log line (access log, errors)."""

    def __init__(self, config, log=print):
        self.config = config
        self.log = log
        self.engine = Engine(config)
        self.created = int(time.time())
        self._runner = None

    # lifecycle
    async def start(self, host, port, ssl_context=None):
        app = web.Application(middlewares=[self._access_log])
        app.router.add_get("/health", self.health)
        app.router.add_get("/ping", self.health)
        app.router.add_post("/ping", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=ssl_context).start()
        self.engine.start()

    async def stop(self):
        await self.engine.stop()
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _access_log(self, request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404/405 as FastAPI words them
            response = web.json_response({"detail": exc.reason}, status=exc.status)
        if self.config.access_log:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            client = f"{peer[0]}:{peer[1]}" if peer else "-"
            self.log(f'INFO:     {client} - "{request.method} {request.path_qs} HTTP/{request.version.major}.'
                     f'{request.version.minor}" {response.status} {response.reason}')
        return response

    # simple endpoints
    async def health(self, request):
        return web.Response(status=200)

    async def version(self, request):
        return web.json_response({"version": self.config.vllm_version})

    async def metrics(self, request):
        return web.Response(body=self.engine.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def models(self, request):
        data = [{"id": name, "object": "model", "created": self.created, "owned_by": "vllm", "root": self.config.model,
                 "parent": None, "max_model_len": self.config.effective_max_model_len,
                 "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                                 "created": self.created, "allow_create_engine": False, "allow_sampling": True,
                                 "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                                 "allow_fine_tuning": False, "organization": "*", "group": None,
                                 "is_blocking": False}]}
                for name in self.config.served_model_names]
        return web.json_response({"object": "list", "data": data})

    # generation
    async def completions(self, request):
        try:
            body = await self._json_body(request)
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
                prompt = prompt[0]
            if isinstance(prompt, list):  # token ids
                prompt = " ".join(str(t) for t in prompt)
            if not isinstance(prompt, str):
                raise RequestError("prompt must be a string, a list of one string, or a list of token ids")
            return await self._generate(request, body, prompt, body.get("max_tokens", 16), chat=False)
        except RequestError as err:
            return err.response()

    async def chat_completions(self, request):
        try:
            body = await self._json_body(request)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise RequestError("messages must be a non-empty list")
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
            return await self._generate(request, body, render_chat_prompt(messages), max_tokens, chat=True)
        except RequestError as err:
            return err.response()

    async def _json_body(self, request):
        try:
            body = await request.json()
        except ValueError as err:
            raise RequestError(f"JSON decode error: {err}") from err
        if not isinstance(body, dict):
            raise RequestError("Input should be a valid dictionary")
        model = body.get("model")
        if model is not None and model not in self.config.served_model_names:
            raise RequestError(f"The model `{model}` does not exist.", status=404, err_type="NotFoundError")
        return body

    def _check_length(self, prompt_len, max_tokens):
        limit = self.config.effective_max_model_len
        if max_tokens is None:
            if prompt_len >= limit:
                raise RequestError(f"This model's maximum context length is {limit} tokens. However, you requested "
                                   f"{prompt_len} tokens in the messages, Please reduce the length of the messages.")
            return limit - prompt_len
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError(f"max_tokens must be at least 1, got {max_tokens}.")
        if prompt_len + max_tokens > limit:
            raise RequestError(f"This model's maximum context length is {limit} tokens. However, you requested "
                               f"{prompt_len + max_tokens} tokens ({prompt_len} in the messages, {max_tokens} in the "
                               "completion). Please reduce the length of the messages or completion.")
        return max_tokens

    async def _generate(self, request, body, prompt, max_tokens, chat):
        prompt_tokens = tok.tokenize(prompt)
        if not prompt_tokens:
            raise RequestError("The decoder prompt cannot be empty")
        max_tokens = self._check_length(len(prompt_tokens), max_tokens)
        model = body.get("model") or self.config.served_model_names[0]
        natural = natural_length(prompt, model)
        count = max_tokens if body.get("ignore_eos") else min(max_tokens, natural)
        finish_reason = "length" if body.get("ignore_eos") or max_tokens < natural else "stop"
        pieces = generated_pieces(prompt, model, count)
        seq = Sequence(len(prompt_tokens), tok.block_hashes(prompt_tokens, self.config.block_size), count)
        request_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        if not self.config.zero_latency:
            await asyncio.sleep(REQUEST_OVERHEAD_S)
        self.engine.submit(seq)
        reply = _Reply(request_id, model, chat, pieces, finish_reason, seq)
        try:
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                response, completed = await reply.stream(request, include_usage)
                if completed:
                    self.engine.metrics.observe_finished(seq, finish_reason)
                else:  # the client went away mid-stream: vLLM aborts the request
                    self.log(f"{_log_prefix('async_llm.py', 360)} Aborted request {request_id}.")
                return response
            while await seq.events.get() is not None:
                pass
            self.engine.metrics.observe_finished(seq, finish_reason)
            return web.json_response(reply.full_body())
        finally:
            self.engine.cancel(seq)


class _Reply:
    """OpenAI response bodies for one request (completion or chat, whole or streamed)."""

    def __init__(self, request_id, model, chat, pieces, finish_reason, seq):
        self.id, self.model, self.chat, self.pieces, self.finish_reason, self.seq = (
            request_id, model, chat, pieces, finish_reason, seq)
        self.created = int(time.time())

    def usage(self):
        return {"prompt_tokens": self.seq.prompt_len, "total_tokens": self.seq.prompt_len + len(self.pieces),
                "completion_tokens": len(self.pieces), "prompt_tokens_details": None}

    def full_body(self):
        text = "".join(self.pieces)
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "reasoning_content": None, "content": text,
                                              "tool_calls": []},
                      "logprobs": None, "finish_reason": self.finish_reason, "stop_reason": None}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": self.finish_reason,
                      "stop_reason": None, "prompt_logprobs": None}
            obj = "text_completion"
        body = {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": [choice],
                "usage": self.usage()}
        if self.chat:
            body["prompt_logprobs"] = None
        return body

    def chunk(self, piece=None, finish_reason=None, first=False):
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": piece} if piece else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish_reason}
            obj = "text_completion"
        if finish_reason:
            choice["stop_reason"] = None
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": [choice]}

    async def stream(self, request, include_usage):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)

        async def send(payload):
            data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
            await response.write(f"data: {data}\n\n".encode())

        try:
            if self.chat:
                await send(self.chunk(first=True))
            while (index := await self.seq.events.get()) is not None:
                last = index == len(self.pieces)
                await send(self.chunk(self.pieces[index - 1], self.finish_reason if last else None))
            if include_usage:
                await send({"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                            "created": self.created, "model": self.model, "choices": [], "usage": self.usage()})
            await send("[DONE]")
            await response.write_eof()
        except ConnectionResetError:
            return response, False
        return response, True


# --- standalone entry point ----------------------------------------------------------------------------

def parse_standalone_args(argv):
    """Simulator options (--accelerator, --devices, --zero-latency) plus any vLLM flag."""
    own = argparse.ArgumentParser(prog="python -m localcluster.vllm_sim", add_help=True)
    own.add_argument("--accelerator", default="nvidia-tesla-t4", choices=sorted(PROFILES))
    own.add_argument("--devices", type=int, default=None, help="GPUs/TPU chips available (default: TP size)")
    own.add_argument("--zero-latency", action="store_true", help="answer at once (benchmark baseline)")
    # Default: the newest release in the collection's table; it runs V1 on every accelerator (a T4 with vLLM
    # before 0.11 would run V0, which has no prefix-cache token counters).
    own.add_argument("--vllm-version", default=vllm_flags.versions.VLLM_RELEASES[-1],
                     help="vLLM release to behave as: its flags, engine and metric names (default: %(default)s)")
    sim, rest = own.parse_known_args(argv)
    if "--host" not in " ".join(rest):
        rest += ["--host", "127.0.0.1"]
    args = vllm_flags.parse_vllm_args(rest, prog=vllm_flags.API_SERVER_PROG, vllm_version=sim.vllm_version)
    if not args.served_model_name and args.model == "facebook/opt-125m" and "--model" not in " ".join(rest):
        args.model = DEFAULT_MODEL_PATH  # the seed's pods serve /mnt/models
    config = SimConfig.from_vllm_args(args, sim.accelerator, devices=sim.devices or args.tensor_parallel_size,
                                      vllm_version=sim.vllm_version, zero_latency=sim.zero_latency)
    return config, args.host, args.port


async def serve_forever(config, host, port):
    server = VllmServer(config)
    await server.start(host, port)
    for line in startup_log_lines(config, host, port):
        print(line, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv=None):
    try:
        config, host, port = parse_standalone_args(sys.argv[1:] if argv is None else argv)
        validate_startup(config)
    except vllm_flags.VllmArgumentError as err:
        sys.stderr.write(err.output)
        return err.exit_code
    except EngineStartupError as err:
        sys.stderr.write(err.log)
        return err.exit_code
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config, host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
