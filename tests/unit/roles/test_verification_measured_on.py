"""verification role: console, JSON and Markdown reports say whether the figures come from GKE or the simulator.

Runs the role's evaluate and report task files with a recorded benchmark result (no cluster needed).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SIMULATED = "measured on the local simulator (simulated vLLM replicas, not GKE performance)"

PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    verification_llmisvc_name: demo
    verification_namespace: ns
    verification_model_name: m
    __verification_url: http://127.0.0.1:1/ns/demo
    __verification_url_source: status.url
    __verification_pod_ips: []
    __verification_checks: [{name: models, passed: true, expected: listed, measured: listed}]
    __verification_benchmark:
      summary:
        config: {load_model: concurrency, warmup_seconds: 1, duration_seconds: 2, max_requests_per_step: null,
                 endpoint: completions, prompt_tokens: 8, max_tokens: 8, headers: {}}
        steps:
          - {concurrency: 1, requests: 4, success_rate: 1.0, requests_per_s: 12.5, output_tokens_per_s: 100,
             ttft_ms: {p50: 10, p95: 20}, itl_ms: {p50: 1, p95: 2}, e2e_ms: {p50: 50, p95: 80, p99: 90}, errors: {}}
        overall: {max_requests_per_s: 12.5, max_output_tokens_per_s: 100, success_rate: 1.0, requests: 4,
                  e2e_ms: {p95: 80}, ttft_ms: {p95: 20}, errors: {}}
  tasks:
    - ansible.builtin.include_role:
        name: llm_serving.gke.verification
        tasks_from: "{{ item }}"
      loop: [evaluate, report]
"""


def run_playbook(tmp_path, text, *extra):
    play = tmp_path / "play.yml"
    play.write_text(text)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", f"verification_report_dir={tmp_path / 'reports'}", *extra],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=180, check=False)


@pytest.mark.parametrize("measured_on, markdown_row, text", [
    ("local-simulator", "| Figures measured on | **local simulator (simulated vLLM replicas, not GKE performance)** |",
     SIMULATED),
    ("gke", "| Figures measured on | **GKE** |", "measured on GKE"),
])
def test_every_report_says_where_the_figures_come_from(tmp_path, measured_on, markdown_row, text):
    out = run_playbook(tmp_path, PLAY, "-e", f"verification_measured_on={measured_on}")
    assert out.returncode == 0, out.stdout + out.stderr
    # Console: the throughput/latency line is followed by its source.
    assert "ns/demo: throughput 12.50 req/s, E2E p95 80 ms, TTFT p95 20 ms" in out.stdout
    assert f"- {text}" in out.stdout
    report = json.loads(next((tmp_path / "reports").glob("*.json")).read_text())
    assert report["measured_on"] == measured_on and report["measured_on_text"] == text
    assert report["benchmark"]["measured_on"] == measured_on
    markdown = next((tmp_path / "reports").glob("*.md")).read_text()
    assert markdown_row in markdown
    assert f"Throughput and latency {text}." in markdown


def test_an_unknown_source_is_refused_naming_the_variable(tmp_path):
    play = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: llm_serving.gke.verification
      verification_llmisvc_name: demo
      verification_namespace: ns
      verification_model_name: m
      verification_measured_on: laptop
"""
    out = run_playbook(tmp_path, play)
    assert out.returncode != 0
    assert "verification_measured_on" in out.stdout and "laptop" in out.stdout


def test_the_local_inventory_labels_its_figures_as_simulated():
    group_vars = yaml.safe_load((ROOT / "inventories" / "local" / "group_vars" / "all" / "vars.yml").read_text())
    assert group_vars["verification_measured_on"] == "local-simulator"
