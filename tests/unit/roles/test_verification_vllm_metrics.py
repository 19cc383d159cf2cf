"""verification role: the cache hit rate names the metric the pattern's vLLM exposes (V0 gauge on the T4 image)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    verification_llmisvc_name: demo
    verification_namespace: ns
    verification_model_name: m
    verification_pattern:
      vllm_version: "0.8.4"
      accelerator: {type: nvidia-tesla-t4}
      vllm_args: [--dtype=half, --enable-prefix-caching, --show-hidden-metrics-for-version=0.7]
    __verification_url: http://127.0.0.1:1/ns/demo
    __verification_url_source: status.url
    __verification_pod_ips: [10.0.0.1]
    __verification_checks: [{name: models, passed: true, expected: listed, measured: listed}]
    __verification_cache:
      summary:
        config: {load_model: concurrency, warmup_seconds: 1, duration_seconds: 2, headers: {}}
        steps:
          - concurrency: 4
            cache:
              hit_rate: 0.6
              hit_rate_metric: "vllm:gpu_prefix_cache_hit_rate (V0 engine gauge: block hit rate since start)"
              replicas: {"http://10.0.0.1:8000": {requests: 10, request_share: 1.0, hit_rate: 0.6}}
              errors: {}
        overall: {max_requests_per_s: 5, success_rate: 1.0, requests: 10, e2e_ms: {p95: 80}, errors: {},
                  cache_hit_rate: 0.6}
  tasks:
    - ansible.builtin.include_role:
        name: llm_serving.gke.verification
        tasks_from: "{{ item }}"
      loop: [evaluate, report]
"""


def test_report_names_the_v0_metric_the_t4_image_exposes(tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", f"verification_report_dir={tmp_path / 'reports'}", "-e", "verification_measured_on=local-simulator"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=180, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(next((tmp_path / "reports").glob("*.json")).read_text())
    assert report["cache"]["hit_rate_metric"].startswith("vllm:gpu_prefix_cache_hit_rate")
    metrics = report["cache"]["vllm_metrics"]
    assert metrics["engine"] == "v0" and metrics["kv_cache_usage"] == "vllm:gpu_cache_usage_perc"
    assert metrics["prefix_cache_hit_rate"] == "vllm:gpu_prefix_cache_hit_rate"
    markdown = next((tmp_path / "reports").glob("*.md")).read_text()
    assert "vLLM 0.8.4 with the V0 engine" in markdown
    assert "(vllm:gpu_prefix_cache_hit_rate (V0 engine gauge" in markdown
