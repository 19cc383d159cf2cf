"""verification role: the cache hit rate names the metric the pattern's vLLM exposes (V0 gauge on the T4 image)."""
import yaml

# The recorded result of the (pre-prefix_cache_check) shared-prefix benchmark on a T4 replica running vLLM 0.8.4.
PLAY_VARS = yaml.safe_load("""
verification_pattern:
  vllm_version: "0.8.4"
  accelerator: {type: nvidia-tesla-t4}
  vllm_args: [--dtype=half, --enable-prefix-caching, --show-hidden-metrics-for-version=0.7]
__verification_pod_ips: [10.0.0.1]
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
""")


def test_report_names_the_v0_metric_the_t4_image_exposes(verification_report):
    run = verification_report(PLAY_VARS, "-e", "verification_measured_on=local-simulator")
    report, markdown = run.report, run.markdown
    assert report["cache"]["hit_rate_metric"].startswith("vllm:gpu_prefix_cache_hit_rate")
    metrics = report["cache"]["vllm_metrics"]
    assert metrics["engine"] == "v0" and metrics["kv_cache_usage"] == "vllm:gpu_cache_usage_perc"
    assert metrics["prefix_cache_hit_rate"] == "vllm:gpu_prefix_cache_hit_rate"
    assert "vLLM 0.8.4 with the V0 engine" in markdown
    assert "(vllm:gpu_prefix_cache_hit_rate (V0 engine gauge" in markdown
