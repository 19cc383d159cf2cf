#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 - Ansible module boilerplate

DOCUMENTATION = r"""
module: llmisvc_wait
short_description: Wait until a KServe LLMInferenceService is ready, or say why it is not
version_added: 0.1.0
author:
  - llm_serving.gke maintainers (@llm-serving)
description:
  - Watches a KServe C(LLMInferenceService) (llmisvc) and its children (Deployments, pods, events, HTTPRoute,
    InferencePool, Gateway) until it is ready, and returns within a second of readiness.
  - Ready means C(status.observedGeneration >= metadata.generation), condition C(Ready=True), C(PresetsCombined)
    not C(False), every Deployment of the llmisvc rolled out at C(spec.replicas) with at least one ready replica
    (unless scaled to 0) when O(require_rollout), and C(status.url) set when O(require_url).
    A C(Ready=True) left over from an older generation is not accepted.
  - When it is not ready, the module diagnoses the first failing sub-condition in KServe's order and drills down to
    pods (scheduling, cluster-autoscaler, image pulls, missing Secrets, init container and crash-loop logs,
    OOMKilled), Deployments (C(ProgressDeadlineExceeded)), HTTPRoute parents (rejected routes, GKE's
    "Timeouts are not supported"), Gateway and InferencePool status. The task fails with one line naming the
    diagnosis and a hint. See docs/troubleshooting.md for every diagnosis reason.
  - Failures that do not heal by waiting end the wait at once when O(fail_fast) is set; transient states
    (node scale-up, model download, vLLM start-up) keep waiting until O(timeout).
  - Uses watches with reconnect, relist on C(410 Gone) and periodic resync; survives API server restarts and
    dropped connections. Falls back to polling a resource only where the credentials may list but not watch it.
  - Needs get, list and watch on C(llminferenceservices), C(deployments), C(pods) and C(events) in O(namespace);
    get on C(pods/log), and list or get on C(httproutes), C(inferencepools) and C(gateways).
  - Reads only; never changes anything (C(changed) is always false).
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details: Reports the current state and diagnosis once, without waiting and without failing.
  diff_mode:
    support: none
    details: It changes nothing, so there is no difference to show.
  platform:
    platforms: all
  action_group:
    support: full
    membership: [llm_serving.gke.k8s]
options:
  name:
    description: Name of the LLMInferenceService.
    type: str
    required: true
  namespace:
    description: Namespace of the LLMInferenceService.
    type: str
    required: true
  api_version:
    description:
      - API version to read the llmisvc through, C(serving.kserve.io/v1alpha2) or C(serving.kserve.io/v1alpha1).
      - Default is the newest of the two that the API server serves (v1alpha2 has the richer status).
    type: str
  timeout:
    description:
      - Seconds to wait for readiness in total. TPU start-up (node scale-up, image pull, model download, XLA
        compilation) takes 5 to 20 minutes.
    type: int
    default: 1800
  progress_deadline:
    description:
      - Seconds without any progress (no change of conditions, replica counts, pod phases or container states)
        after which the wait ends, unless a known slow step (node scale-up, model download, start-up) is under way.
      - Also decides when a Deployment's C(Progressing=False/ProgressDeadlineExceeded) counts as a failure. The
        Deployment controller sets that condition once the Deployment's C(progressDeadlineSeconds) (600 s, the
        Kubernetes default that KServe v0.20 keeps) pass without a new ready replica, and it keeps rolling out; a
        TPU replica takes about 1500 s. While a pod of the Deployment still makes progress (a node being added,
        the image being pulled, an init container such as the model download running, vLLM started and within
        its startup probe budget) the condition is not a failure. It is one (with O(fail_fast)) only when no pod
        of the Deployment has made a step forward for O(progress_deadline) seconds, by the pods' API timestamps.
    type: int
    default: 600
  require_rollout:
    description:
      - Require every Deployment of the llmisvc to be fully rolled out (updated, available and total replicas equal
        to C(spec.replicas), at least one ready replica unless scaled to 0), not just minimum availability as
        KServe's C(Ready) condition reports.
    type: bool
    default: true
  require_url:
    description: Require C(status.url) to be set.
    type: bool
    default: true
  progress_file:
    description:
      - Path of a file the module keeps replacing, while it waits, with where the deployment is, as JSON (keys
        C(line), C(nodes), C(pods), C(workloads), C(diagnosis), C(elapsed), C(time), C(final)), on every change
        and at least every O(progress_interval) seconds.
      - For a playbook that runs the wait with C(async) and shows the file's C(line) while polling it (role
        C(llm_serving.gke.llmisvc) does this). Written on the host the module runs on.
    type: path
  progress_interval:
    description: Seconds between two writes of O(progress_file) when nothing changes.
    type: int
    default: 10
  fail_fast:
    description:
      - Stop at once on failures that will not heal by waiting (image that cannot be pulled after the back-off
        repeats, vLLM rejecting its arguments, route rejected by the gateway, missing Secret after a short grace,
        Deployment C(ProgressDeadlineExceeded) once none of its pods has made progress for O(progress_deadline)
        seconds).
    type: bool
    default: true
requirements:
  - kubernetes >= 24.2.0
seealso:
  - module: kubernetes.core.k8s_info
notes:
  - Unlike C(kubernetes.core.k8s_info) with O(kubernetes.core.k8s_info#module:wait_condition), this module checks
    the generation, the rollout and the URL, and fails early with a reason instead of timing out.
  - Pod logs are read through the API server. Where they cannot be read, the diagnosis uses the container's
    termination message and says so.
"""

EXAMPLES = r"""
- name: Wait for the Pattern 3 GPU llmisvc
  llm_serving.gke.llmisvc_wait:
    name: qwen2-3b-pattern3-gpu
    namespace: llm-d-inference-scheduling
  register: llmisvc

- name: Show where it serves
  ansible.builtin.debug:
    msg: "{{ llmisvc.url }} ready after {{ llmisvc.elapsed }}s"

- name: Wait for a TPU deployment with a longer timeout, keep going on failure to report it
  llm_serving.gke.llmisvc_wait:
    name: qwen2-3b-pattern1-tpu
    namespace: llm-d-inference-scheduling
    timeout: 2700
    progress_deadline: 900
  register: tpu_wait
  ignore_errors: true

- name: Report the diagnosis
  ansible.builtin.debug:
    msg: "{{ tpu_wait.diagnosis.reason }}: {{ tpu_wait.diagnosis.hint }}"
  when: not tpu_wait.ready

- name: Accept a scaled-to-zero service without a URL (internal only)
  llm_serving.gke.llmisvc_wait:
    name: qwen2-3b-pattern3-gpu
    namespace: llm-d-inference-scheduling
    require_url: false
    kubeconfig: "{{ llm_serving_kubeconfig }}"
"""

RETURN = r"""
ready:
  description: Whether the llmisvc is ready by the rules above.
  returned: always
  type: bool
  sample: true
outcome:
  description:
    - C(ready), C(failed) (a failure that does not heal by waiting), C(timeout) (O(timeout) or O(progress_deadline)
      reached), C(stopped) (annotation C(serving.kserve.io/stop=true)), or C(pending) (check mode only, not ready
      yet and nothing permanent found).
  returned: always
  type: str
  sample: ready
api_version:
  description: The apiVersion the llmisvc was read through.
  returned: always
  type: str
  sample: serving.kserve.io/v1alpha2
url:
  description: C(status.url), empty when not published.
  returned: always
  type: str
  sample: http://34.90.1.2/llm-d-inference-scheduling/qwen2-3b-pattern3-gpu
addresses:
  description: C(status.addresses) as the controller wrote them.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "gateway-external", "url": "http://34.90.1.2/llm-d-inference-scheduling/qwen2-3b-pattern3-gpu"}]
conditions:
  description: The llmisvc conditions in KServe's order.
  returned: always
  type: list
  elements: dict
  contains:
    type: {description: Condition type, type: str, sample: Ready}
    status: {description: "C(True), C(False) or C(Unknown)", type: str, sample: "True"}
    reason: {description: Reason, type: str, sample: MinimumReplicasUnavailable}
    message: {description: Message, type: str, sample: Deployment does not have minimum availability.}
    last_transition_time: {description: lastTransitionTime, type: str, sample: "2026-11-27T02:10:00Z"}
workloads:
  description: The Deployments of the llmisvc with their replica counts and whether they are rolled out.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: Deployment
      name: qwen2-3b-pattern3-gpu-kserve
      component: llminferenceservice-workload
      replicas: 3
      current_replicas: 3
      updated_replicas: 3
      ready_replicas: 3
      available_replicas: 3
      generation: 2
      observed_generation: 2
      rolled_out: true
generation:
  description: C(metadata.generation) of the llmisvc.
  returned: always
  type: int
  sample: 2
observed_generation:
  description: C(status.observedGeneration) of the llmisvc.
  returned: always
  type: int
  sample: 2
elapsed:
  description: Seconds the module waited.
  returned: always
  type: float
  sample: 412.7
timeline:
  description:
    - Every condition transition seen during the wait, and every change of C(status.observedGeneration).
      The first entries are the state found at the start, timed by their C(lastTransitionTime).
  returned: always
  type: list
  elements: dict
  sample:
    - {time: "2026-11-27T02:10:03Z", elapsed: 0.01, type: Ready, status: "False",
       reason: MinimumReplicasUnavailable, message: Deployment does not have minimum availability.}
    - {time: "2026-11-27T02:16:45Z", elapsed: 402.2, type: Ready, status: "True", reason: "", message: ""}
progress:
  description:
    - Where the deployment was during the wait, one entry per change of the progress line (nodes ready of
      needed, pods by stage, current diagnosis), oldest first (the last 500).
  returned: always
  type: list
  elements: dict
  sample:
    - {time: "2026-11-27T02:10:03Z", elapsed: 0.1, line: "qwen2-3b-pattern1-tpu after 0s: nodes ready 0 of 1
        needed (1 being added); pods 1: 1 scaling-up; pod qwen2-3b-pattern1-tpu-kserve-7b9c6d5f8-8kq4w:
        FailedScheduling: ..."}
    - {time: "2026-11-27T02:21:40Z", elapsed: 697.4, line: "qwen2-3b-pattern1-tpu after 697s: nodes ready 1 of
        1 needed; pods 1: 1 ready; ready"}
diagnosis:
  description: Why the llmisvc is not ready (empty when ready). Reasons are listed in docs/troubleshooting.md.
  returned: always
  type: dict
  contains:
    component: {description: "The object at fault, e.g. C(pod <name>), C(httproute <name>)", type: str}
    reason: {description: "Machine-readable reason, e.g. C(ImagePullBackOff), C(RouteTimeoutsUnsupported)", type: str}
    message: {description: What was observed, type: str}
    hint: {description: What to do about it, type: str}
  sample:
    component: pod qwen2-3b-pattern3-gpu-kserve-5f7c9d-x2x9z
    reason: ImagePullBackOff
    message: ImagePullBackOff for registry.example/vllm:bad
    hint: check the image name and the pull secret redhat-pull-secret
events:
  description: Recent Warning events of the llmisvc, its Deployments, ReplicaSets, pods, HTTPRoute, InferencePool
    and Gateway, oldest first.
  returned: always
  type: list
  elements: dict
  sample:
    - {time: "2026-11-27T02:11:00Z", kind: Pod, name: qwen2-3b-pattern3-gpu-kserve-5f7c9d-x2x9z,
       namespace: llm-d-inference-scheduling, reason: Failed, count: 3,
       message: "Failed to pull image \"registry.example/vllm:bad\": not found"}
read_errors:
  description: Reads that failed during the wait (for example RBAC denying pod logs), by resource.
  returned: when a read failed
  type: dict
  sample: {pods: "403 Forbidden: pods is forbidden"}
"""

import copy  # noqa: E402 - imports follow the documentation blocks in Ansible modules
import time  # noqa: E402

from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_status as lms  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_watch as lw  # noqa: E402

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

    HAS_KUBERNETES_COLLECTION = True
except ImportError:
    HAS_KUBERNETES_COLLECTION = False
    AUTH_ARG_SPEC = {}

try:
    from kubernetes.client.exceptions import ApiException
except ImportError:
    ApiException = Exception


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        name=dict(type="str", required=True),
        namespace=dict(type="str", required=True),
        api_version=dict(type="str"),
        timeout=dict(type="int", default=1800),
        progress_deadline=dict(type="int", default=600),
        require_rollout=dict(type="bool", default=True),
        require_url=dict(type="bool", default=True),
        fail_fast=dict(type="bool", default=True),
        progress_file=dict(type="path"),
        progress_interval=dict(type="int", default=10),
    )
    return spec


def validate_params(params):
    """Errors in the options, each naming the option; empty when valid."""
    errors = []
    for option in ("timeout", "progress_deadline", "progress_interval"):
        if params[option] <= 0:
            errors.append(f"{option} must be a positive number of seconds, got {params[option]}")
    if params.get("api_version"):
        try:
            lms.parse_api_version(params["api_version"])
        except ValueError as exc:
            errors.append(str(exc))
    for option in ("name", "namespace"):
        if not (params[option] or "").strip():
            errors.append(f"{option} must not be empty")
    return errors


CONNECT_RETRY_SECONDS = 120


def connect(module, deadline):
    """kubernetes.core's client; retried while the API server is unreachable (e.g. restarting) until the deadline.

    Building the client runs discovery, which fails with a connection error or, for a plain-HTTP host, with
    ValueError; both are worth retrying.
    """
    backoff = lw.Backoff(0.5, 5.0)
    while True:
        try:
            return get_api_client(module=module)
        except lw.transport_errors():
            if time.monotonic() + 1 >= deadline:
                raise
            time.sleep(backoff.next())


def run(module):
    params = module.params
    deadline = time.monotonic() + (0 if module.check_mode else params["timeout"])
    # A restart takes seconds; a wrong host or CA would fail the same way for the whole timeout.
    client = connect(module, min(deadline, time.monotonic() + CONNECT_RETRY_SECONDS))
    api = lw.ApiSession(client.client)
    if params.get("api_version"):
        version = lms.parse_api_version(params["api_version"])
    else:
        version = lw.discover_version(api, deadline)
    waiter = lw.LlmisvcWaiter(
        api,
        params["name"],
        params["namespace"],
        version,
        timeout=params["timeout"],
        progress_deadline=params["progress_deadline"],
        require_rollout=params["require_rollout"],
        require_url=params["require_url"],
        fail_fast=params["fail_fast"],
        progress_file=params.get("progress_file"),
        progress_interval=params["progress_interval"],
    )
    return waiter.run(wait=not module.check_mode)


def main():
    if not HAS_KUBERNETES_COLLECTION:
        from ansible.module_utils.basic import AnsibleModule

        AnsibleModule(argument_spec={}, bypass_checks=True).fail_json(
            msg="The kubernetes.core collection (>= 6.2.0) must be installed"
        )
    module = AnsibleK8SModule(argument_spec=argument_spec(), supports_check_mode=True)
    errors = validate_params(module.params)
    if errors:
        module.fail_json(msg="; ".join(errors))
    try:
        result = run(module)
    except lw.WaitError as exc:
        module.fail_json(msg=str(exc), ready=False, outcome="failed")
    except CoreException as exc:
        module.fail_from_exception(exc)
    except ApiException as exc:
        module.fail_json(
            msg="API error while waiting for {}/{}: {}".format(
                module.params["namespace"], module.params["name"], lw.error_text(exc)
            ),
            ready=False,
            outcome="failed",
        )
    except lw.transport_errors() as exc:
        module.fail_json(
            msg=f"cannot reach the Kubernetes API server: {lw.error_text(exc)}", ready=False, outcome="failed"
        )
    result["changed"] = False
    # Check mode reports what it found (even a permanent failure) without failing the play.
    if result["outcome"] in ("ready", "pending") or module.check_mode:
        module.exit_json(**result)
    module.fail_json(**result)


if __name__ == "__main__":
    main()
