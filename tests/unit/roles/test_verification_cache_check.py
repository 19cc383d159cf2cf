"""verification role: the prefix-cache check states the round-robin hit rate and fails when routing does not
beat it clearly. Runs evaluate and report with a recorded prefix_cache_check result (no cluster needed)."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import prefix_affinity as pa

ROOT = Path(__file__).resolve().parents[3]
REPLICAS = ["http://127.0.0.2:8000", "http://127.0.0.3:8000", "http://127.0.0.4:8000"]

PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    verification_llmisvc_name: demo
    verification_namespace: ns
    verification_model_name: m
    verification_cache_test: true
    verification_cache_require_beats_round_robin: true
    __verification_url: http://127.0.0.1:1/ns/demo
    __verification_url_source: status.url
    __verification_pod_ips: []
    __verification_checks: [{name: models, passed: true, expected: listed, measured: listed}]
  tasks:
    - ansible.builtin.include_role:
        name: llm_serving.gke.verification
        tasks_from: "{{ item }}"
      loop: [evaluate, report]
"""


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


def verify(tmp_path, cache_result):
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "vars.json").write_text(json.dumps({
        "__verification_cache": cache_result, "verification_report_dir": str(tmp_path / "reports"),
        "verification_cache_prefix_groups": 24}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=180, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    report = json.loads(next((tmp_path / "reports").glob("*.json")).read_text())
    return report, next((tmp_path / "reports").glob("*.md")).read_text()


def test_prefix_aware_routing_passes_and_the_report_states_round_robin(tmp_path):
    report, markdown = verify(tmp_path, recorded(lambda i, g: REPLICAS[g % 3]))
    cache = report["cache"]
    assert report["failures"] == []
    assert cache["gain_over_round_robin"] == pytest.approx(1.0)
    assert cache["hit_rate"] > cache["round_robin_hit_rate"]
    assert cache["replica_request_sum"] == cache["requests"] == 96
    assert "| Hit rate (tokens) | Measured | Round robin, same workload | Best possible | Gap closed |" in markdown
    assert "per-replica requests\nadd up to 96 of 96." in markdown or "add up to 96 of 96." in markdown
    assert "| 0 | 4 |" in markdown  # prefix 0: 4 requests, then the replicas that served them


def test_round_robin_routing_fails_the_prefix_aware_pattern(tmp_path):
    report, markdown = verify(tmp_path, recorded(lambda i, g: REPLICAS[i % 3]))
    assert report["cache"]["gain_over_round_robin"] == pytest.approx(0.0)
    assert any(f.startswith("verification_cache_min_gain: measured 0 of the gap from the round-robin to the best "
                            "hit rate, required >= 0.5") for f in report["failures"]), report["failures"]
    assert "**FAIL**" in markdown
