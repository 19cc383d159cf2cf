"""verification role: the prefix-cache check states the round-robin hit rate and fails when routing does not
beat it clearly. Runs evaluate and report with a recorded prefix_cache_check result (no cluster needed)."""
import random

import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import prefix_affinity as pa
from tests.chart_svg import read_chart

REPLICAS = ["http://127.0.0.2:8000", "http://127.0.0.3:8000", "http://127.0.0.4:8000"]
PLAY_VARS = {"verification_cache_test": True, "verification_cache_require_beats_round_robin": True,
             "verification_cache_prefix_groups": 24}


def recorded(route):
    order = [g for _round in range(4) for g in range(24)]
    random.Random(3).shuffle(order)
    seen, records = set(), []
    for index, group in enumerate(order):
        url = route(index, group)
        records.append({"group": group, "ok": True, "error": None, "replica": url,
                        "hit_tokens": 256 if (url, group) in seen else 0, "query_tokens": 280})
        seen.add((url, group))
    return {"summary": pa.analyse(records, REPLICAS), "scrape_errors": {}}


def test_prefix_aware_routing_passes_and_the_report_states_round_robin(verification_report):
    run = verification_report({**PLAY_VARS, "__verification_cache": recorded(lambda i, g: REPLICAS[g % 3])})
    report, markdown = run.report, run.markdown
    cache = report["cache"]
    assert report["failures"] == []
    assert cache["gain_over_round_robin"] == pytest.approx(1.0)
    assert cache["hit_rate"] > cache["round_robin_hit_rate"]
    assert cache["replica_request_sum"] == cache["requests"] == 96
    assert "| Hit rate (tokens) | Measured | Round robin, same workload | Best possible | Gap closed |" in markdown
    assert "per-replica requests\nadd up to 96 of 96." in markdown or "add up to 96 of 96." in markdown
    assert "| 0 | 4 |" in markdown  # prefix 0: 4 requests, then the replicas that served them
    # Charts beside the report: request share and hit rate per replica, measured against round robin.
    base = next(run.dir.glob("*.md")).name[:-3]
    assert f"]({base}-replicas.svg)" in markdown and f"]({base}-hit-rates.svg)" in markdown
    per_replica = read_chart(str(run.dir / f"{base}-replicas.svg"))
    assert per_replica["x_labels"] == [url[len("http://"):] for url in REPLICAS]
    for url in REPLICAS:
        rep = cache["replicas"][url]
        label = url[len("http://"):]
        assert per_replica["series"]["request share"][label] == f"{rep['request_share'] * 100:.1f}"
        assert per_replica["series"]["hit rate"][label] == f"{rep['hit_rate'] * 100:.1f}"
        assert f"| `{url}` | {rep['requests']} | {rep['request_share'] * 100:.1f} % | {rep['hit_rate'] * 100:.1f} % |" \
            in markdown
    rates = read_chart(str(run.dir / f"{base}-hit-rates.svg"))["series"]["hit rate"]
    assert rates == {name: f"{cache[key] * 100:.1f}" for name, key in (
        ("measured", "hit_rate"), ("round robin", "round_robin_hit_rate"), ("best possible", "best_hit_rate"))}


def test_round_robin_routing_fails_the_prefix_aware_pattern(verification_report):
    run = verification_report({**PLAY_VARS, "__verification_cache": recorded(lambda i, g: REPLICAS[i % 3])})
    report, markdown = run.report, run.markdown
    assert report["cache"]["gain_over_round_robin"] == pytest.approx(0.0)
    assert any(f.startswith("verification_cache_min_gain: measured 0 of the gap from the round-robin to the best "
                            "hit rate, required >= 0.5") for f in report["failures"]), report["failures"]
    assert "**FAIL**" in markdown
