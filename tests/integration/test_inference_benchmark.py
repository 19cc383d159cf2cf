"""llm_serving.gke.inference_benchmark run by ansible-playbook against a simulated vLLM server.

The server is ``python -m localcluster.vllm_sim`` on a free loopback port (no cluster needed): it streams
tokens with vLLM's latency model, keeps an LRU prefix cache of 16-token blocks and exports vLLM's metrics.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
MODEL = "Qwen/Qwen2.5-3B-Instruct"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_url():
    port = free_port()
    python = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
    process = subprocess.Popen(
        [str(python), "-m", "localcluster.vllm_sim", "--host", "127.0.0.1", "--port", str(port),
         "--served-model-name", MODEL, "--enable-prefix-caching", "--disable-log-requests"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail(f"localcluster.vllm_sim did not answer {url}/health (see its output above)")
    yield url
    process.terminate()
    process.wait(10)


def run_module(tmp_path, args, check=False):
    """Run the module in a one-task playbook; return (rc, registered result or None, stdout)."""
    playbook = tmp_path / "bench.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Benchmark", "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"name": "Run the benchmark", "llm_serving.gke.inference_benchmark": args, "register": "bench"},
            {"name": "Save the result", "ansible.builtin.copy": {
                "content": "{{ bench | to_json }}", "dest": str(tmp_path / "result.json"), "mode": "0644"},
             "check_mode": False},
        ],
    }]))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOME": str(ROOT / ".cache" / "ansible-home"),
           "ANSIBLE_LOCAL_TEMP": str(ROOT / ".cache" / "ansible-tmp")}
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    result_file = tmp_path / "result.json"
    return proc.returncode, (json.loads(result_file.read_text()) if result_file.exists() else None), proc.stdout


def test_concurrency_steps_stream_and_write_the_json_file(vllm_url, tmp_path):
    output = tmp_path / "out" / "bench.json"
    rc, result, stdout = run_module(tmp_path, {
        "base_url": vllm_url, "model": MODEL, "concurrency": [1, 3], "warmup_seconds": 0.2, "duration_seconds": 0,
        "max_requests_per_step": 6, "max_tokens": 6, "output_file": str(output)})
    assert rc == 0, stdout
    assert result["changed"] is False
    steps = result["summary"]["steps"]
    assert [(s["concurrency"], s["requests"], s["successful"]) for s in steps] == [(1, 6, 6), (3, 6, 6)]
    for step in steps:
        # Streaming: the first token arrives before the response ends, and tokens come at intervals.
        assert 0 < step["ttft_ms"]["p50"] < step["e2e_ms"]["p50"]
        assert step["itl_ms"]["count"] == 6 * 5 and step["itl_ms"]["p50"] > 0
        assert step["output_tokens"] == 36
    written = json.loads(output.read_text())
    assert len(written["records"]) == 12 and written["summary"]["success_rate"] == 1.0
    assert "records" not in result  # only with return_records


def test_shared_prefix_poisson_run_reports_cache_hits_from_metrics(vllm_url, tmp_path):
    rc, result, stdout = run_module(tmp_path, {
        "base_url": vllm_url, "model": MODEL, "endpoint": "chat", "load_model": "poisson", "request_rates": [8.0],
        "warmup_seconds": 0, "duration_seconds": 0, "max_requests_per_step": 12, "max_tokens": 2,
        "workload": "shared_prefix", "shared_prefix_tokens": 64, "prefix_groups": 2, "metrics_urls": [vllm_url],
        "return_records": True})
    assert rc == 0, stdout
    step = result["summary"]["steps"][0]
    assert step["request_rate"] == 8.0 and step["successful"] == 12
    assert step["cache"]["hit_rate"] > 0.3  # 2 prefixes of 64 words: all but the first two requests hit
    assert step["cache"]["replicas"][vllm_url]["request_share"] == 1.0
    assert result["summary"]["overall"]["cache_hit_rate"] == step["cache"]["hit_rate"]
    assert len(result["records"]) == 12


def test_check_mode_runs_but_writes_no_file(vllm_url, tmp_path):
    output = tmp_path / "never.json"
    rc, result, stdout = run_module(tmp_path, {
        "base_url": vllm_url, "model": MODEL, "warmup_seconds": 0, "duration_seconds": 0,
        "max_requests_per_step": 2, "max_tokens": 2, "output_file": str(output)}, check=True)
    assert rc == 0, stdout
    assert result["summary"]["steps"][0]["successful"] == 2
    assert not output.exists() and "output_file" not in result


def test_wrong_model_is_reported_as_http_404(vllm_url, tmp_path):
    rc, result, stdout = run_module(tmp_path, {
        "base_url": vllm_url, "model": "no-such-model", "warmup_seconds": 0, "duration_seconds": 0,
        "max_requests_per_step": 2})
    assert rc == 0, stdout  # failures are measurements; thresholds are the verification role's job
    step = result["summary"]["steps"][0]
    assert step["errors"] == {"http_404": 2} and "no-such-model" in step["error_examples"]["http_404"]


def test_bad_option_fails_before_any_request(tmp_path):
    rc, result, stdout = run_module(tmp_path, {
        "base_url": "http://127.0.0.1:9", "model": MODEL, "workload": "shared_prefix", "shared_prefix_tokens": 8})
    assert rc != 0 and result is None
    assert "shared_prefix_tokens must be longer than one 16-token KV block (got 8)" in stdout
