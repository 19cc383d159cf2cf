"""verification role: console, JSON and Markdown reports say whether the figures come from GKE or the simulator,
and the Markdown report shows the benchmark as SVG charts beside it (text chart when pygal is missing).

Runs the role's evaluate and report task files with a recorded benchmark result (no cluster needed).
"""
from pathlib import Path

import pytest
import yaml

from tests.chart_svg import read_chart

ROOT = Path(__file__).resolve().parents[3]
SIMULATED = "measured on the local simulator (simulated vLLM replicas, not GKE performance)"
BENCHMARK = {
    "summary": {
        "config": {"load_model": "concurrency", "warmup_seconds": 1, "duration_seconds": 2,
                   "max_requests_per_step": None, "endpoint": "completions", "prompt_tokens": 8, "max_tokens": 8,
                   "headers": {}},
        "steps": [
            {"concurrency": 1, "requests": 4, "success_rate": 1.0, "requests_per_s": 12.5,
             "output_tokens_per_s": 100, "ttft_ms": {"p50": 10, "p95": 20}, "itl_ms": {"p50": 1, "p95": 2},
             "e2e_ms": {"p50": 50, "p95": 80, "p99": 90}, "errors": {}},
            {"concurrency": 4, "requests": 16, "success_rate": 1.0, "requests_per_s": 31.75,
             "output_tokens_per_s": 250, "ttft_ms": {"p50": 12, "p95": 33.4}, "itl_ms": {"p50": 1, "p95": 3},
             "e2e_ms": {"p50": 90, "p95": 141.26, "p99": 150}, "errors": {}},
        ],
        "overall": {"max_requests_per_s": 31.75, "max_output_tokens_per_s": 250, "success_rate": 1.0,
                    "requests": 20, "e2e_ms": {"p95": 141.26}, "ttft_ms": {"p95": 33.4}, "errors": {}},
    },
}


@pytest.mark.parametrize("measured_on, markdown_row, text", [
    ("local-simulator", "| Figures measured on | **local simulator (simulated vLLM replicas, not GKE performance)** |",
     SIMULATED),
    ("gke", "| Figures measured on | **GKE** |", "measured on GKE"),
])
def test_every_report_says_where_the_figures_come_from(verification_report, measured_on, markdown_row, text):
    run = verification_report({"__verification_benchmark": BENCHMARK}, "-e", f"verification_measured_on={measured_on}")
    # Console: the throughput/latency line is followed by its source.
    assert "ns/demo: throughput 31.75 req/s, E2E p95 141 ms, TTFT p95 33 ms" in run.proc.stdout
    assert f"- {text}" in run.proc.stdout
    assert run.report["measured_on"] == measured_on and run.report["measured_on_text"] == text
    assert run.report["benchmark"]["measured_on"] == measured_on
    assert markdown_row in run.markdown
    assert f"Throughput and latency {text}." in run.markdown
    # The benchmark charts: SVG files beside the Markdown, titled with the source, linked by relative paths.
    base = next(run.dir.glob("*.md")).name[:-3]
    files = {name: run.dir / f"{base}-{name}.svg" for name in ("throughput", "latency")}
    assert sorted(run.report["report_charts"]) == sorted(str(path) for path in files.values())
    source = "GKE" if measured_on == "gke" else "local simulator, not GKE"
    assert f"![Throughput per step (req/s, {source})]({base}-throughput.svg)" in run.markdown
    assert f"![p95 latency per step (ms, {source})]({base}-latency.svg)" in run.markdown
    assert "throughput (req/s)" not in run.markdown
    # The charts plot the numbers of the report's table.
    assert "| c=4 | 16 | 100.0 % | 31.75 |" in run.markdown
    assert read_chart(str(files["throughput"]))["series"] == {"req/s": {"c=1": "12.50", "c=4": "31.75"}}
    latency = read_chart(str(files["latency"]))["series"]
    assert latency == {"E2E p95": {"c=1": "80.0", "c=4": "141.3"}, "TTFT p95": {"c=1": "20.0", "c=4": "33.4"}}
    assert "/ 141.3 /" in run.markdown  # the table's E2E p95 of c=4


def test_without_pygal_the_markdown_keeps_its_text_chart(verification_report, tmp_path):
    # A pygal that cannot be imported, first on the module's PYTHONPATH.
    (tmp_path / "nopygal" / "pygal").mkdir(parents=True)
    (tmp_path / "nopygal" / "pygal" / "__init__.py").write_text("raise ImportError('pygal hidden by the test')\n")
    run = verification_report({"__verification_benchmark": BENCHMARK}, "-e", "verification_measured_on=gke",
                              env={"PYTHONPATH": str(tmp_path / "nopygal")})
    assert "pygal is not installed" in run.proc.stdout + run.proc.stderr
    assert list(run.dir.glob("*.svg")) == [] and run.report["report_charts"] == []
    assert "step        throughput (req/s)" in run.markdown and "![" not in run.markdown


def test_an_unknown_source_is_refused_naming_the_variable(ansible_playbook):
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
    out = ansible_playbook(play)
    assert out.returncode != 0
    assert "verification_measured_on" in out.stdout and "laptop" in out.stdout


def test_the_local_inventory_labels_its_figures_as_simulated():
    group_vars = yaml.safe_load((ROOT / "inventories" / "local" / "group_vars" / "all" / "vars.yml").read_text())
    assert group_vars["verification_measured_on"] == "local-simulator"
