#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
---
module: inference_benchmark
short_description: Benchmark an OpenAI-compatible inference endpoint with streaming requests
version_added: 0.1.0
description:
  - Sends load to C(<base_url>/v1/completions) or C(<base_url>/v1/chat/completions) from one asyncio event loop
    over HTTP/1.1 keep-alive connections (asyncio with the httptools parser; replica metrics are read with
    aiohttp), with C(stream=true), so that time to first token (TTFT) and
    inter-token latency (ITL) are measured from the streamed tokens, not from the response headers.
  - "Two load models: C(concurrency) (closed loop: each of N workers sends its next request when the last one ends,
    one step per entry of O(concurrency)) and C(poisson) (open loop: arrivals at exponentially distributed intervals,
    one step per entry of O(request_rates))."
  - Each step sends requests during O(warmup_seconds) without recording them, then measures for
    O(duration_seconds) or until O(max_requests_per_step) measured requests were started.
  - "Two workloads: C(distinct) prompts that share no KV-cache block, and C(shared_prefix) prompts that each take
    one of O(prefix_groups) shared prefixes of O(shared_prefix_tokens) words (one word is at least one token),
    picked at random so the sequence never aligns with a round-robin gateway, followed by a unique question."
  - Reports per step requests per second, output tokens per second, TTFT, ITL, time per output token and
    end-to-end latency (mean and p50/p90/p95/p99 in milliseconds), success rate and failures by class
    (C(http_<code>), C(timeout), C(connection_error), C(incomplete_stream), C(no_choices), C(empty_output),
    C(protocol_error), C(server_error)).
  - With O(metrics_urls), scrapes each replica's C(/metrics) when the warm-up ends and after the step, and reports
    the prefix-cache hit rate from the deltas of C(vllm:prefix_cache_hits_total) and
    C(vllm:prefix_cache_queries_total) and each replica's share of the requests from C(vllm:request_success_total).
    A replica on vLLM's V0 engine (vLLM before 0.11 on a GPU below compute capability 8.0, such as the T4) has no
    such counters; its hit rate is the gauge C(vllm:gpu_prefix_cache_hit_rate) (block hit rate since the replica
    started; vLLM 0.8 and 0.9 expose it only with C(--show-hidden-metrics-for-version=<previous minor>)).
  - Output token counts come from the server's C(usage) (C(stream_options.include_usage)); no tokenizer is needed.
author:
  - llm_serving.gke maintainers (@llm-serving)
extends_documentation_fragment:
  - llm_serving.gke.inference
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The benchmark only reads from the server, so it also runs in check mode; O(output_file) is not written.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  load_model:
    description:
      - C(concurrency) runs one closed-loop step per O(concurrency) entry.
      - C(poisson) runs one open-loop step per O(request_rates) entry.
    type: str
    choices: [concurrency, poisson]
    default: concurrency
  concurrency:
    description: Number of concurrent workers for each step of the C(concurrency) load model.
    type: list
    elements: int
    default: [1]
  request_rates:
    description: Mean request rate (requests per second) of each step of the C(poisson) load model.
    type: list
    elements: float
    default: []
  max_concurrency:
    description: Cap on requests in flight (and HTTP connections) for the C(poisson) load model; later arrivals wait.
    type: int
    default: 256
  warmup_seconds:
    description: Seconds at the start of each step whose requests are sent but not recorded.
    type: float
    default: 2.0
  duration_seconds:
    description:
      - Measured seconds per step after the warm-up.
      - C(0) means no time limit; O(max_requests_per_step) then ends the step.
    type: float
    default: 10.0
  max_requests_per_step:
    description: Stop a step after this many measured requests were started.
    type: int
  workload:
    description: C(distinct) prompts or C(shared_prefix) prompts.
    type: str
    choices: [distinct, shared_prefix]
    default: distinct
  prompt_tokens:
    default: 32
  prefix_groups:
    description: Number of distinct shared prefixes the C(shared_prefix) workload cycles over.
    type: int
    default: 4
  max_tokens:
    default: 32
  temperature:
    description: C(temperature) of every request.
    type: float
    default: 0.0
  ignore_eos:
    description: Send the vLLM extension C(ignore_eos=true) so every response has O(max_tokens) tokens.
    type: bool
    default: false
  metrics_urls:
    description:
      - Base URLs of the replicas (for example C(http://<pod IP>:8000)) whose C(/metrics) are scraped around each
        step. A replica that cannot be scraped is reported in the C(errors) of the step's C(cache) result.
    type: list
    elements: str
    default: []
  seed:
    description: Seed of the prompt and arrival generators, for repeatable runs.
    type: int
    default: 0
  output_file:
    description: Write the full result (configuration, per-step summaries and every request record) to this JSON file.
    type: path
  return_records:
    description: Also return every request record (large for long runs).
    type: bool
    default: false
notes:
  - "The module reports C(changed=false): it changes nothing on the server. Run it on a host that can reach
    O(base_url), usually the controller (C(delegate_to: localhost))."
  - One request is one record; failed requests are excluded from the latency distributions and counted by
    class in the C(errors) of each step.
  - Requests go straight to O(base_url) (C(HTTP_PROXY) is not used) and redirects are not followed (they count as
    C(http_3xx)). A kept-alive connection that the server closed while idle is retried once on a new one.
seealso:
  - name: vLLM benchmark_serving metrics
    description: TTFT, ITL and TPOT as vLLM's own benchmark defines them.
    link: https://docs.vllm.ai/en/latest/contributing/benchmarks.html
"""

EXAMPLES = r"""
- name: Two concurrency steps of 30 s against the llmisvc URL
  llm_serving.gke.inference_benchmark:
    base_url: "{{ llmisvc_url }}"
    model: Qwen/Qwen2.5-3B-Instruct
    concurrency: [1, 8]
    warmup_seconds: 5
    duration_seconds: 30
    output_file: /tmp/benchmark.json
  delegate_to: localhost
  register: bench

- name: Poisson arrivals at 2 and 5 req/s with a shared-prefix workload and replica metrics
  llm_serving.gke.inference_benchmark:
    base_url: "{{ llmisvc_url }}"
    model: Qwen/Qwen2.5-3B-Instruct
    load_model: poisson
    request_rates: [2, 5]
    workload: shared_prefix
    shared_prefix_tokens: 256
    metrics_urls: "{{ pod_ips | map('regex_replace', '^(.*)$', 'http://\\1:8000') | list }}"
  delegate_to: localhost
  register: cache_bench

- name: Show the prefix-cache hit rate
  ansible.builtin.debug:
    msg: "hit rate {{ cache_bench.summary.overall.cache_hit_rate }}"
"""

RETURN = r"""
summary:
  description: Configuration, per-step results and figures across all steps.
  returned: always
  type: dict
  contains:
    config:
      description: The settings used (defaults filled in, headers not included).
      type: dict
      returned: always
    measured_on:
      description: O(measured_on) as given, C(gke), C(local-simulator) or C(unstated).
      type: str
      returned: always
      sample: local-simulator
    measured_on_text:
      description: A sentence saying where the throughput and latency of this result were measured.
      type: str
      returned: always
      sample: measured on the local simulator (simulated vLLM replicas, not GKE performance)
    steps:
      description:
        - One entry per step with C(concurrency) or C(request_rate), C(requests), C(successful), C(failed),
          C(success_rate), C(duration_s), C(requests_per_s), C(output_tokens_per_s), C(output_tokens),
          C(ttft_ms), C(itl_ms), C(tpot_ms), C(e2e_ms) (each with C(count), C(mean), C(min), C(max), C(p50),
          C(p90), C(p95), C(p99)), C(errors) (count per class), C(error_examples) and C(cache).
        - C(cache) is null without O(metrics_urls); otherwise C(hit_rate), C(hit_rate_metric) (the metric it
          comes from), C(prefix_cache_hits),
          C(prefix_cache_queries), C(requests), C(errors) and C(replicas) (per URL the counter deltas, C(hit_rate)
          and C(request_share)).
      type: list
      elements: dict
      returned: always
      sample:
        - concurrency: 8
          requests: 412
          successful: 412
          success_rate: 1.0
          requests_per_s: 13.7
          ttft_ms: {count: 412, mean: 61.2, min: 40.3, max: 190.8, p50: 55.0, p90: 80.1, p95: 95.4, p99: 160.2}
          errors: {}
          cache: null
    overall:
      description:
        - Across all steps, C(requests), C(successful), C(success_rate), C(max_requests_per_s),
          C(max_output_tokens_per_s), C(ttft_ms), C(e2e_ms), C(errors) and C(cache_hit_rate) (the lowest step
          hit rate, null without O(metrics_urls)).
      type: dict
      returned: always
records:
  description: Every measured request (start, status, error class, TTFT, ITLs, end-to-end time, tokens).
  returned: when O(return_records=true)
  type: list
  elements: dict
output_file:
  description: Path of the JSON file written.
  returned: when O(output_file) is set and not in check mode
  type: str
"""

import json  # noqa: E402 (imports follow the documentation, as in every Ansible module)
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_http  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils import inference_load  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils import inference_metrics  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils import inference_workload  # noqa: E402

ARGUMENT_SPEC = dict(
    base_url=dict(type="str", required=True),
    model=dict(type="str", required=True),
    endpoint=dict(type="str", choices=["completions", "chat"], default="completions"),
    load_model=dict(type="str", choices=["concurrency", "poisson"], default="concurrency"),
    concurrency=dict(type="list", elements="int", default=[1]),
    request_rates=dict(type="list", elements="float", default=[]),
    max_concurrency=dict(type="int", default=256),
    warmup_seconds=dict(type="float", default=2.0),
    duration_seconds=dict(type="float", default=10.0),
    max_requests_per_step=dict(type="int"),
    workload=dict(type="str", choices=["distinct", "shared_prefix"], default="distinct"),
    prompt_tokens=dict(type="int", no_log=False, default=32),
    shared_prefix_tokens=dict(type="int", no_log=False, default=256),
    prefix_groups=dict(type="int", default=4),
    max_tokens=dict(type="int", no_log=False, default=32),
    temperature=dict(type="float", default=0.0),
    ignore_eos=dict(type="bool", default=False),
    request_timeout=dict(type="float", default=60.0),
    metrics_urls=dict(type="list", elements="str", default=[]),
    headers=dict(type="dict", default={}, no_log=True),  # credentials (Authorization)
    validate_certs=dict(type="bool", default=True),
    seed=dict(type="int", default=0),
    output_file=dict(type="path"),
    return_records=dict(type="bool", default=False),
    measured_on=dict(type="str", choices=["gke", "local-simulator", "unstated"], default="unstated"),
)

MODULE_ONLY_OPTIONS = ("output_file", "return_records", "measured_on")
MEASURED_ON_TEXT = {
    "gke": "measured on GKE",
    "local-simulator": "measured on the local simulator (simulated vLLM replicas, not GKE performance)",
    "unstated": "where this was measured is not stated (measured_on: unstated); do not read it as a GKE figure",
}


def write_result(path, config, result, measured_on):
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory)
    with open(path, "w") as handle:
        json.dump({"config": config, "summary": result["summary"], "steps": result["steps"],
                   "records": result["records"], "measured_on": measured_on,
                   "measured_on_text": MEASURED_ON_TEXT[measured_on]}, handle, indent=2, sort_keys=True)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    for library, error in (("aiohttp", inference_metrics.AIOHTTP_IMPORT_ERROR),
                           ("httptools", inference_http.HTTPTOOLS_IMPORT_ERROR)):
        if error:
            module.fail_json(msg=missing_required_lib(library), exception=error)
    options = {key: value for key, value in module.params.items() if key not in MODULE_ONLY_OPTIONS}
    try:
        config = inference_workload.build_config(**options)
    except inference_workload.BenchmarkConfigError as exc:
        module.fail_json(msg=str(exc))
    result = inference_load.run(config)
    public_config = {key: value for key, value in config.items() if key != "headers"}
    measured_on = module.params["measured_on"]
    response = {"changed": False, "summary": {"config": public_config, "steps": result["steps"],
                                              "overall": result["summary"], "measured_on": measured_on,
                                              "measured_on_text": MEASURED_ON_TEXT[measured_on]}}
    if module.params["return_records"]:
        response["records"] = result["records"]
    if module.params["output_file"] and not module.check_mode:
        write_result(module.params["output_file"], public_config, result, measured_on)
        response["output_file"] = module.params["output_file"]
    module.exit_json(**response)


if __name__ == "__main__":
    main()
