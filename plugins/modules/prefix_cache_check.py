#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
---
module: prefix_cache_check
short_description: Measure which replica serves each shared-prefix group and the prefix-cache hit rate it buys
version_added: 0.1.0
description:
  - Sends O(prefix_groups) x O(requests_per_group) requests to O(base_url), one at a time and in random group
    order, each made of one of O(prefix_groups) fresh random shared prefixes (new every run, so no replica has
    them cached) and a unique question. There is no warm-up.
  - Around every request it reads each replica's C(/metrics) (O(metrics_urls)). Exactly one replica's request
    counter (C(vllm:request_success_total)) moves; that replica served the request, and its own
    C(vllm:prefix_cache_hits_total) and C(vllm:prefix_cache_queries_total) deltas are the request's hit and
    queried tokens (vLLM V1 token counters, vllm-project/vllm C(vllm/v1/metrics/loggers.py)).
  - Reports per prefix group the replicas that served it (affinity), per replica its requests, hit rate and
    groups, the overall hit rate, the hit rate a round-robin router would get on the same request sequence
    (request i to replica i mod the number of replicas; a request hits when its replica served its group
    before), and the best possible hit rate (only each group's first request misses).
author:
  - llm_serving.gke maintainers (@llm-serving)
extends_documentation_fragment:
  - llm_serving.gke.inference
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The check only reads from the server.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  metrics_urls:
    description:
      - Base URLs of all replicas (for example C(http://<pod IP>:8000)); their C(/metrics) must be reachable
        from the host that runs the module.
    type: list
    elements: str
    required: true
  prefix_groups:
    description: Number of shared prefixes; use several per replica (for example 8) so that routing matters.
    type: int
    default: 8
  requests_per_group:
    description: Requests per prefix group (at least 2).
    type: int
    default: 4
  prompt_tokens:
    default: 16
  max_tokens:
    description:
      - C(max_tokens) of every request (at least 1, the least vLLM accepts).
      - Generated tokens do not change the measurement. vLLM decides a request's prefix-cache hit when the scheduler
        first looks its prompt up, and counts it there - C(queries) the request's tokens (only the prompt at that
        point), C(hits) its cached prompt tokens (vllm-project/vllm C(vllm/v1/core/kv_cache_manager.py)
        C(get_computed_blocks) / C(record_prefix_cache_stats), read at commit 003df2961dd8, the source of
        C(vllm:prefix_cache_queries_total) and C(vllm:prefix_cache_hits_total)) - and every request's prompt ends in
        a question of its own, so no request's generated tokens can be part of another's prompt. One token is the
        fastest check.
    default: 1
  settle_seconds:
    description: Seconds to wait after a response for one replica's request counter to move.
    type: float
    default: 2.0
  seed:
    description: Seed of the prefixes and the order; omit it for fresh prefixes on every run.
    type: int
notes:
  - A request whose serving replica cannot be told (no counter moved within O(settle_seconds), or more than one
    moved because other traffic reached the replicas) counts in RV(summary.unattributed_requests) and in no
    replica; then the per-replica request counts do not add up to RV(summary.requests).
seealso:
  - module: llm_serving.gke.inference_benchmark
"""

EXAMPLES = r"""
- name: Does prefix-aware routing keep each prefix on one replica?
  llm_serving.gke.prefix_cache_check:
    base_url: "{{ llmisvc_url }}"
    model: Qwen/Qwen2.5-3B-Instruct
    metrics_urls: "{{ pod_ips | map('regex_replace', '^(.*)$', 'http://\\1:8000') | list }}"
    prefix_groups: 24
  delegate_to: localhost
  register: affinity

- name: Compare with round robin
  ansible.builtin.assert:
    that: affinity.summary.hit_rate > affinity.summary.round_robin_hit_rate + 0.1
"""

RETURN = r"""
summary:
  description: The measurement; null when no request could be sent (see RV(scrape_errors)).
  returned: always
  type: dict
  contains:
    requests:
      description: Requests sent.
      type: int
    successful:
      description: Requests answered with HTTP 200 and a complete stream.
      type: int
    errors:
      description: Failed requests by class (see M(llm_serving.gke.inference_benchmark)).
      type: dict
    unattributed_requests:
      description: Requests whose serving replica could not be told.
      type: int
    replica_request_sum:
      description: Sum of the per-replica request counts; equals RV(summary.requests) when all were attributed.
      type: int
    hit_rate:
      description: Hit tokens / queried tokens over all replicas, from each replica's own counters.
      type: float
    round_robin_hit_rate:
      description: The hit rate a round-robin router would get on the same request sequence.
      type: float
    best_hit_rate:
      description: The hit rate if only the first request of each group missed.
      type: float
    prefix_hit_tokens:
      description: Median hit tokens of a request that hit (the cached, block-aligned part of a prefix).
      type: float
    mean_group_affinity:
      description: Mean over groups of the share of the group's requests served by its most used replica.
      type: float
    groups:
      description: Per group (key = group number) C(requests), C(replicas) (requests per replica URL),
        C(replica_count) and C(top_replica_share).
      type: dict
    replicas:
      description: Per replica URL C(requests), C(request_share), C(prefix_cache_hits), C(prefix_cache_queries),
        C(hit_rate) and C(groups) (the groups it served).
      type: dict
    measured_on:
      description: O(measured_on) as given.
      type: str
scrape_errors:
  description: Replicas whose C(/metrics) could not be read before the first request (then nothing is sent).
  returned: always
  type: dict
seed:
  description: The seed the prefixes were made from.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_http, inference_metrics, prefix_affinity  # noqa: E402

ARGUMENT_SPEC = dict(
    base_url=dict(type="str", required=True),
    model=dict(type="str", required=True),
    metrics_urls=dict(type="list", elements="str", required=True),
    endpoint=dict(type="str", choices=["completions", "chat"], default="completions"),
    prefix_groups=dict(type="int", default=8),
    requests_per_group=dict(type="int", default=4),
    shared_prefix_tokens=dict(type="int", no_log=False, default=256),
    prompt_tokens=dict(type="int", no_log=False, default=16),
    max_tokens=dict(type="int", no_log=False, default=1),
    request_timeout=dict(type="float", default=60.0),
    settle_seconds=dict(type="float", default=2.0),
    seed=dict(type="int"),
    headers=dict(type="dict", default={}, no_log=True),  # credentials (Authorization)
    validate_certs=dict(type="bool", default=True),
    measured_on=dict(type="str", choices=["gke", "local-simulator", "unstated"], default="unstated"),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    for library, error in (("aiohttp", inference_metrics.AIOHTTP_IMPORT_ERROR),
                           ("httptools", inference_http.HTTPTOOLS_IMPORT_ERROR)):
        if error:
            module.fail_json(msg=missing_required_lib(library), exception=error)
    options = {key: value for key, value in module.params.items() if key != "measured_on"}
    try:
        config = prefix_affinity.build_config(**options)
    except prefix_affinity.AffinityConfigError as exc:
        module.fail_json(msg=str(exc))
    result = prefix_affinity.run(config)
    if result["summary"] is not None:
        result["summary"]["measured_on"] = module.params["measured_on"]
    module.exit_json(changed=False, summary=result["summary"], scrape_errors=result["scrape_errors"],
                     seed=result["seed"])


if __name__ == "__main__":
    main()
