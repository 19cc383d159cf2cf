# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Options the modules that send requests to an OpenAI-compatible server share (inference_benchmark,
prefix_cache_check)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)


class ModuleDocFragment:
    # llm_serving.gke.inference
    DOCUMENTATION = r"""
options:
  base_url:
    description:
      - Base URL of the OpenAI-compatible API, without C(/v1), for example the llmisvc C(status.url)
        C(http://203.0.113.10/llm-d-inference-scheduling/qwen2-3b-pattern3-gpu).
    type: str
    required: true
  model:
    description: Model name sent in every request (the served model name listed by C(/v1/models)).
    type: str
    required: true
  endpoint:
    description: Which API to call, C(/v1/completions) or C(/v1/chat/completions).
    type: str
    choices: [completions, chat]
    default: completions
  shared_prefix_tokens:
    description:
      - Words in each shared prefix (one word is at least one token). Must be more than one 16-token KV block; use
        at least 128 for TPU, whose blocks are larger.
    type: int
    default: 256
  prompt_tokens:
    description: Words in the unique part of each prompt (after the shared prefix, if any).
    type: int
  max_tokens:
    description: C(max_tokens) of every request.
    type: int
  request_timeout:
    description: Seconds before one request counts as C(timeout).
    type: float
    default: 60.0
  headers:
    description:
      - Extra HTTP headers for every request, for example C(Authorization).
      - Their values are masked in the module's logged arguments and results (C(no_log)), as any credential is.
    type: dict
    default: {}
  validate_certs:
    description: Verify TLS certificates of C(https) URLs.
    type: bool
    default: true
  measured_on:
    description:
      - Where O(base_url) is served, so that the result says where its throughput and latency come from.
      - C(gke) for a GKE deployment; C(local-simulator) for the embedded local cluster of this collection, whose
        vLLM replicas are simulators (their speed says nothing about a TPU or GPU); C(unstated) when the caller
        does not say (the result then says that the source is not stated).
      - The module cannot tell by itself. The local simulator answers C(/version) with the same body as vLLM's
        C(show_version) (a JSON object with the vLLM version, vllm-project/vllm
        C(vllm/entrypoints/openai/api_server.py), v0.10.1.1), so it is the caller who says where it runs.
    type: str
    choices: [gke, local-simulator, unstated]
    default: unstated
requirements:
  - aiohttp >= 3.8 and httptools >= 0.6 (on the host that runs the module, usually the controller)
"""
