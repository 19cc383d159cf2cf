# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Load generator for OpenAI-compatible inference servers: load models and the benchmark run.

Used by the ``inference_benchmark`` module. One asyncio event loop drives every request over a
pool of keep-alive HTTP/1.1 connections (parsed by httptools, ``inference_http``) and reads streamed Server-Sent
Events, so time to first token and inter-token latency are real, and the client stays far below the server's
capacity even on one CPU core. Configuration and prompts: ``inference_workload``; replica metrics:
``inference_metrics``; statistics: ``inference_stats``.

Load models (as in vLLM's ``bench serve`` and kubernetes-sigs/inference-perf):

* ``concurrency``: closed loop, N workers each sending the next request when the last one ends.
* ``poisson``: open loop, arrivals at exponentially distributed intervals at a fixed mean rate.

Each step runs a warm-up (requests sent, not recorded) and then a measured window.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import asyncio
import math
import random
import time

from ansible_collections.llm_serving.gke.plugins.module_utils.inference_http import (
    HTTPTOOLS_IMPORT_ERROR,
    ConnectionPool,
    send_request,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.inference_metrics import (
    AIOHTTP_IMPORT_ERROR,
    cache_report,
    scrape_replicas,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.inference_stats import summarize_run, summarize_step
from ansible_collections.llm_serving.gke.plugins.module_utils.inference_workload import (
    BenchmarkConfigError,
    PromptSource,
)


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
