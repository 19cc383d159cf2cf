# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Prefix-cache affinity check: which replica served each request of each shared-prefix group.

Sends a shared-prefix workload one request at a time, in random group order, with fresh random prefixes (so
every replica's cache starts cold for them) and no warm-up. Around every request it reads each replica's
``/metrics``: exactly one replica's request counter moves, which names the replica that served the request,
and that replica's own prefix-cache counters give the request's hit and queried tokens. From that:

- per prefix group, the replicas that served it (affinity);
- per replica, its requests, hit and queried tokens and hit rate from its own counters;
- the hit rate a round-robin router would get on the same request sequence (request i to replica i mod R;
  a request hits when its replica served its group before, with the hit tokens measured for hits), and the
  best possible (only each group's first request misses).

Token counters (vLLM V1: vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total) give the rates in
tokens. The V0 engine (vLLM < 0.11 on GPUs below compute capability 8.0, e.g. the T4) only has a since-start
hit-rate gauge, which cannot be split per request: then the rates are in requests (a request counts as a hit
when its replica had served its group before) and ``hit_rate_basis`` says so.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module_utils boilerplate)

import asyncio
import random
import statistics
import time

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_http, inference_metrics
from ansible_collections.llm_serving.gke.plugins.module_utils import inference_workload

DEFAULTS = {
    "endpoint": "completions",
    "prefix_groups": 8,
    "requests_per_group": 4,
    "shared_prefix_tokens": 256,
    "prompt_tokens": 16,
    # A hit is decided on the prompt when vLLM schedules it; generated tokens do not count (prefix_cache_check docs).
    "max_tokens": 1,
    "request_timeout": 60.0,
    "headers": {},
    "validate_certs": True,
    "seed": None,
    "settle_seconds": 2.0,
}


class AffinityConfigError(ValueError):
    """Invalid settings; the message names the option."""


def build_config(base_url, model, metrics_urls, **options):
    config = dict(DEFAULTS)
    config.update({key: value for key, value in options.items() if value is not None})
    if not metrics_urls:
        raise AffinityConfigError(
            "metrics_urls is empty: the check reads each replica's /metrics to see which one served a request")
    for key in ("prefix_groups", "requests_per_group"):
        if not isinstance(config[key], int) or config[key] < 1 or (key == "requests_per_group" and config[key] < 2):
            raise AffinityConfigError(f"{key} must be a whole number >= {2 if key == 'requests_per_group' else 1}, "
                                      f"got {config[key]!r}")
    if not isinstance(config["max_tokens"], int) or config["max_tokens"] < 1:
        raise AffinityConfigError(f"max_tokens must be a whole number >= 1 (vLLM refuses less), got "
                                  f"{config['max_tokens']!r}")
    if config["shared_prefix_tokens"] <= inference_workload.KV_BLOCK_TOKENS:
        raise AffinityConfigError(
            f"shared_prefix_tokens must be longer than one {inference_workload.KV_BLOCK_TOKENS}-token KV block, "
            f"got {config['shared_prefix_tokens']!r}")
    if config["seed"] is None:  # fresh prefixes every run: no replica has them cached
        config["seed"] = random.SystemRandom().randrange(2 ** 62)
    # The benchmark's request plumbing (ConnectionPool, send_request) reads these keys.
    config.update(base_url=base_url.rstrip("/"), model=model, metrics_urls=list(metrics_urls), stream=True,
                  temperature=0.0, ignore_eos=False)
    return config


def workload(config):
    """[(group, prompt)] in random group order: requests_per_group requests for each of prefix_groups prefixes."""
    rng = random.Random(f"affinity/{config['seed']}")
    seed = config["seed"]
    prefixes = [f"Context {seed:x}-{group}: "
                + inference_workload._words(random.Random(f"{seed}/{group}"), config["shared_prefix_tokens"]) + "."
                for group in range(config["prefix_groups"])]
    order = [group for group in range(config["prefix_groups"]) for _repeat in range(config["requests_per_group"])]
    rng.shuffle(order)
    return [(group, f"{prefixes[group]} Question {index}: {inference_workload._words(rng, config['prompt_tokens'])}?")
            for index, group in enumerate(order)]


def _counter_deltas(before, after):
    deltas = {}
    for url, old in before.items():
        new = after.get(url, {})
        if "error" in old or "error" in new:
            deltas[url] = None
            continue
        deltas[url] = {key: (new[key] - old[key]) if new.get(key) is not None and old.get(key) is not None else None
                       for key in ("requests", "prefix_cache_hits", "prefix_cache_queries")}
    return deltas


async def _attributed(config, before):
    """Scrape until exactly one replica's request counter moved (a replica counts a request when it finishes,
    which can be just after the last streamed byte); return (after, serving url or None, its deltas)."""
    deadline = time.monotonic() + config["settle_seconds"]
    while True:
        after = await inference_metrics.scrape_replicas(config)
        deltas = _counter_deltas(before, after)
        moved = [url for url, d in deltas.items() if d and d["requests"]]
        if len(moved) == 1 and deltas[moved[0]]["requests"] == 1:
            return after, moved[0], deltas[moved[0]]
        if len(moved) > 1 or any(d and (d["requests"] or 0) > 1 for d in deltas.values()) \
                or time.monotonic() > deadline:
            return after, None, None
        await asyncio.sleep(0.02)


async def run_check(config):
    pool = inference_http.ConnectionPool(config)
    records = []
    clock_zero = time.perf_counter()
    try:
        before = await inference_metrics.scrape_replicas(config)
        errors = {url: c["error"] for url, c in before.items() if "error" in c}
        if errors:
            return {"records": [], "scrape_errors": errors}
        for index, (group, prompt) in enumerate(workload(config)):
            record = await inference_http.send_request(pool, config, prompt, index, clock_zero)
            after, url, delta = await _attributed(config, before)
            records.append({"group": group, "ok": record["ok"], "error": record["error"], "replica": url,
                            "hit_tokens": delta["prefix_cache_hits"] if delta else None,
                            "query_tokens": delta["prefix_cache_queries"] if delta else None})
            before = after
        gauges = {url: c.get("prefix_cache_hit_rate") for url, c in before.items() if "error" not in c}
    finally:
        pool.close()
    return {"records": records, "scrape_errors": {}, "gauges": gauges if records else {}}


def analyse(records, replicas, gauges=None):
    """Affinity per group, per-replica counters, measured / round-robin / best hit rates."""
    replica_stats = {url: {"requests": 0, "prefix_cache_hits": 0, "prefix_cache_queries": 0, "groups": []}
                     for url in replicas}
    groups = {}
    unattributed = 0
    for record in records:
        groups.setdefault(record["group"], {"requests": 0, "replicas": {}})
        groups[record["group"]]["requests"] += 1
        url = record["replica"]
        if url is None:
            unattributed += 1
            continue
        stats = replica_stats[url]
        stats["requests"] += 1
        stats["prefix_cache_hits"] += record["hit_tokens"] or 0
        stats["prefix_cache_queries"] += record["query_tokens"] or 0
        served = groups[record["group"]]["replicas"]
        served[url] = served.get(url, 0) + 1
    for url, stats in replica_stats.items():
        stats["hit_rate"] = (stats["prefix_cache_hits"] / stats["prefix_cache_queries"]
                             if stats["prefix_cache_queries"] else None)
        stats["groups"] = sorted(g for g, info in groups.items() if url in info["replicas"])
    total_requests = len(records)
    attributed = total_requests - unattributed
    for stats in replica_stats.values():
        stats["request_share"] = stats["requests"] / attributed if attributed else None
    hits = sum(s["prefix_cache_hits"] for s in replica_stats.values())
    queries = sum(s["prefix_cache_queries"] for s in replica_stats.values())
    token_counters = any(r["query_tokens"] is not None for r in records)
    hit_sizes = [r["hit_tokens"] for r in records if r["hit_tokens"]]
    prefix_hit_tokens = statistics.median(hit_sizes) if hit_sizes else 0
    # Round robin on the same sequence: request i goes to replica i mod R; it hits when that replica served
    # the group before. Best case: only the first request of each group misses. Routed: what the real router
    # did, in the same request terms (a request whose replica had served its group before).
    seen_rr, seen_any, seen_routed = set(), set(), set()
    rr_hits = best_hits = 0
    rr_requests = best_requests = routed_requests = 0
    for index, record in enumerate(records):
        target = index % max(1, len(replicas))
        if (target, record["group"]) in seen_rr:
            rr_hits += prefix_hit_tokens
            rr_requests += 1
        seen_rr.add((target, record["group"]))
        if record["group"] in seen_any:
            best_hits += prefix_hit_tokens
            best_requests += 1
        seen_any.add(record["group"])
        if record["replica"] is not None:
            if (record["replica"], record["group"]) in seen_routed:
                routed_requests += 1
            seen_routed.add((record["replica"], record["group"]))
    count = len(records)
    for url, stats in replica_stats.items():
        gauge = (gauges or {}).get(url)
        if not token_counters and gauge is not None:  # V0: the replica's since-start block hit rate
            stats["hit_rate"] = gauge
            stats["hit_rate_since_start"] = True
    affinity = {str(group): {"requests": info["requests"], "replicas": info["replicas"],
                             "replica_count": len(info["replicas"]),
                             "top_replica_share": (max(info["replicas"].values()) / info["requests"])
                             if info["replicas"] else None}
                for group, info in sorted(groups.items())}
    mean_top = [a["top_replica_share"] for a in affinity.values() if a["top_replica_share"] is not None]
    return {
        "requests": total_requests,
        "successful": sum(1 for r in records if r["ok"]),
        "errors": _count(r["error"] for r in records if r["error"]),
        "unattributed_requests": unattributed,
        "replica_request_sum": sum(s["requests"] for s in replica_stats.values()),
        "hit_rate_basis": "tokens" if token_counters else "requests",
        "hit_rate": (hits / queries if queries else None) if token_counters
        else (routed_requests / count if count else None),
        "prefix_cache_hits": hits if token_counters else None,
        "prefix_cache_queries": queries if token_counters else None,
        "prefix_hit_tokens": prefix_hit_tokens,
        "round_robin_hit_rate": (rr_hits / queries if queries else None) if token_counters
        else (rr_requests / count if count else None),
        "best_hit_rate": (best_hits / queries if queries else None) if token_counters
        else (best_requests / count if count else None),
        "routed_hit_rate_requests": routed_requests / count if count else None,
        "round_robin_hit_rate_requests": rr_requests / count if count else None,
        "best_hit_rate_requests": best_requests / count if count else None,
        "mean_group_affinity": statistics.fmean(mean_top) if mean_top else None,
        "groups": affinity,
        "replicas": replica_stats,
    }


def _count(values):
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def run(config):
    result = asyncio.run(run_check(config))
    summary = analyse(result["records"], config["metrics_urls"], result.get("gauges")) if result["records"] else None
    return {"summary": summary, "scrape_errors": result["scrape_errors"], "records": result["records"],
            "seed": config["seed"]}
