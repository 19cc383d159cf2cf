# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Replica metrics of vLLM servers: Prometheus text parsing, the prefix-cache and request counters by vLLM
version, concurrent scrapes of every replica, and the prefix-cache report from two scrapes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import asyncio
import re
import traceback

from ansible_collections.llm_serving.gke.plugins.module_utils.vllm_versions import METRIC_ROLES

try:
    import aiohttp

    AIOHTTP_IMPORT_ERROR = None
except ImportError:  # reported by the module through missing_required_lib
    aiohttp = None
    AIOHTTP_IMPORT_ERROR = traceback.format_exc()

# vLLM metric names by role, from the collection's vLLM version table (vllm_versions.METRIC_ROLES: the V1
# token counters of 0.9+ first, then V1's deprecated gpu_* names of 0.8/0.9), plus names without _total.
PREFIX_HITS_METRICS = METRIC_ROLES["prefix_cache_hits"] + ("vllm:prefix_cache_hits",)
PREFIX_QUERIES_METRICS = METRIC_ROLES["prefix_cache_queries"] + ("vllm:prefix_cache_queries",)
# The V0 engine (vLLM < 0.11 on GPUs below compute capability 8.0, e.g. the T4) has no such counters, only the
# gauge vllm:gpu_prefix_cache_hit_rate: block hit rate since the engine started, exposed by vLLM 0.8/0.9 with
# --show-hidden-metrics-for-version=<previous minor> (vllm-project/vllm v0.8.4 vllm/engine/metrics.py).
PREFIX_HIT_RATE_METRICS = METRIC_ROLES["prefix_cache_hit_rate"]
REQUEST_COUNT_METRICS = METRIC_ROLES["requests"] + ("vllm:e2e_request_latency_seconds_count",)

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


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
