# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Benchmark configuration and workloads for OpenAI-compatible inference servers: options with their
defaults and checks, prompts (distinct or with shared prefixes) and request bodies.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import random
import re

KV_BLOCK_TOKENS = 16

LOAD_MODELS = ("concurrency", "poisson")
WORKLOADS = ("distinct", "shared_prefix")
ENDPOINTS = ("completions", "chat")

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


class BenchmarkConfigError(ValueError):
    """Invalid benchmark settings; the message names the option."""


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
