# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Statistics of a benchmark run: percentiles, latency distributions (TTFT, ITL, TPOT, end to end),
throughput per step and for the whole run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import math

PERCENTILES = (50, 90, 95, 99)


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
