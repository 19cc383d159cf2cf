#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
---
module: http_checks
short_description: Send several HTTP requests at once and return each status and JSON body
version_added: 0.3.0
description:
  - Sends every request of O(requests) concurrently (one thread each, at most O(parallel) at a time) in one module
    run, instead of one C(ansible.builtin.uri) task or loop item (one module start) per request, and returns for
    each its HTTP status and, when the body is JSON, the parsed body.
  - "A request that gets no response (connection refused, timeout, TLS error) has status V(-1) and a
    RV(results[].msg) naming the cause, as C(ansible.builtin.uri) reports it; no status fails the module - the caller
    judges them."
  - The llm_serving.gke.verification role sends its functional checks with it (C(/v1/models), C(/v1/completions),
    C(/v1/chat/completions), C(/health) through the gateway and on each workload pod).
author:
  - llm_serving.gke maintainers (@llm-serving)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The requests run in check mode too; use it only for requests that change nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  requests:
    description:
      - One entry per request. Keys C(url) (required), C(method) (default V(GET)), C(body) (sent as JSON when
        set), C(headers) (dict, added to O(headers) and winning over them), C(use_headers) (bool, default V(true);
        V(false) sends the request without O(headers), for example to a pod directly rather than through the
        gateway the credentials are for). Other keys (for example C(name), C(item)) are returned unchanged in
        RV(results).
    type: list
    elements: dict
    required: true
  headers:
    description:
      - HTTP headers sent with every request whose C(use_headers) is not V(false), for example C(Authorization).
      - Their values are masked in the module's logged arguments and results (C(no_log)); put credentials here
        rather than in a request's own C(headers), which are not masked.
    type: dict
    default: {}
  timeout:
    description: Seconds before a request without a response counts as failed.
    type: float
    default: 60
  validate_certs:
    description: Verify the server certificates of HTTPS URLs.
    type: bool
    default: true
  parallel:
    description: Requests in flight at a time.
    type: int
    default: 8
"""

EXAMPLES = r"""
- name: Ask for the models through the gateway (with its credentials) and the health of two pods, at once
  llm_serving.gke.http_checks:
    headers:
      Authorization: "Bearer {{ gateway_token }}"
    requests:
      - {name: models, url: "{{ base_url }}/v1/models"}
      - {name: completion, url: "{{ base_url }}/v1/completions", method: POST,
         body: {model: my-model, prompt: Hello, max_tokens: 1}}
      - {name: pod_health, item: 10.0.0.1, url: "http://10.0.0.1:8000/health", use_headers: false}
      - {name: pod_health, item: 10.0.0.2, url: "http://10.0.0.2:8000/health", use_headers: false}
  register: __http

- name: Every request answered 200
  ansible.builtin.assert:
    that: __http.results | rejectattr('status', 'equalto', 200) | list | length == 0
"""

RETURN = r"""
results:
  description: One entry per request, in the order of O(requests).
  returned: always
  type: list
  elements: dict
  contains:
    url:
      description: The request's URL.
      type: str
    status:
      description: HTTP status of the response; V(-1) when there was none.
      type: int
    json:
      description: The body parsed as JSON; null when it is not JSON.
      type: raw
    msg:
      description: "C(OK (<n> bytes)), C(HTTP Error <status>: <reason>) or why there was no response."
      type: str
"""

import json  # noqa: E402 - imports follow the documentation blocks in Ansible modules
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.urls import open_url  # noqa: E402
from ansible.module_utils.six.moves.urllib.error import HTTPError  # noqa: E402

ARGUMENT_SPEC = dict(
    requests=dict(type="list", elements="dict", required=True),
    headers=dict(type="dict", default={}, no_log=True),  # credentials (Authorization)
    timeout=dict(type="float", default=60.0),
    validate_certs=dict(type="bool", default=True),
    parallel=dict(type="int", default=8),
)
NOT_RETURNED = ("body", "headers", "use_headers")  # request keys left out of its result


def request_errors(requests):
    """Problems of the requests, each naming the entry; empty when all can be sent."""
    errors = []
    for index, request in enumerate(requests):
        if not isinstance(request.get("url"), str) or not request["url"]:
            errors.append(f"requests[{index}] lacks url")
        if request.get("headers") is not None and not isinstance(request["headers"], dict):
            errors.append(f"requests[{index}].headers must be a dict")
        if not isinstance(request.get("use_headers", True), bool):
            errors.append(f"requests[{index}].use_headers must be true or false")
    return errors


def _parse(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def send(request, timeout, validate_certs, common_headers=None, opener=open_url):
    """One request, with `common_headers` unless its use_headers is false; the result keeps the request's own keys
    except body, headers and use_headers."""
    result = {key: value for key, value in request.items() if key not in NOT_RETURNED}
    headers = dict(common_headers or {}) if request.get("use_headers", True) else {}
    headers.update(request.get("headers") or {})
    data = None
    if request.get("body") is not None:
        data = json.dumps(request["body"]).encode()
        headers.setdefault("Content-Type", "application/json")
    try:
        response = opener(request["url"], method=(request.get("method") or "GET").upper(), data=data,
                          headers=headers, timeout=timeout, validate_certs=validate_certs, follow_redirects="safe")
        body = response.read()
        result.update(status=response.getcode(), json=_parse(body), msg=f"OK ({len(body)} bytes)")
    except HTTPError as exc:
        try:
            body = exc.read()
        except Exception:  # noqa: BLE001 - a body that cannot be read is no body
            body = b""
        result.update(status=exc.code, json=_parse(body), msg=f"HTTP Error {exc.code}: {exc.reason}")
    except Exception as exc:  # noqa: BLE001 - every failure to get a response is reported, as uri does
        result.update(status=-1, json=None, msg=f"Request failed: {exc}")
    return result


def run(requests, timeout, validate_certs, parallel, common_headers=None, opener=open_url):
    if not requests:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(requests)))) as pool:
        return list(pool.map(lambda request: send(request, timeout, validate_certs, common_headers, opener),
                             requests))


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    errors = request_errors(module.params["requests"])
    if module.params["parallel"] < 1:
        errors.append(f"parallel must be at least 1, got {module.params['parallel']}")
    if errors:
        module.fail_json(msg="http_checks: " + "; ".join(errors))
    module.exit_json(changed=False, results=run(module.params["requests"], module.params["timeout"],
                                                module.params["validate_certs"], module.params["parallel"],
                                                module.params["headers"]))


if __name__ == "__main__":
    main()
