"""roles/verification: the GKE policies must target exactly the pool (group/kind/name) the HTTPRoute uses.

KServe v0.20 creates the InferencePool in both API groups under one name and points the route at the
inference.networking.x-k8s.io/v1alpha2 pool until the gateway rejects it (kserve/kserve v0.20.0
pkg/controller/v1alpha2/llmisvc/router.go); GKE attaches a policy only to the backend its targetRef names.
Runs the role's policy_check.yml with the route / policies as the API would return them (no cluster).
"""
import json

import pytest

V1, V1ALPHA2 = "inference.networking.k8s.io", "inference.networking.x-k8s.io"
POOL = "m-inference-pool"

PLAYBOOK = """
- name: Evaluate the policy check
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Set the facts routing.yml would have set (extra vars could not be overwritten by the role)
      ansible.builtin.set_fact:
        __verification_checks: []
        __verification_policies: "{{ given.policies }}"
        __verification_pool_refs: "{{ given.pool_refs }}"
    - name: Run policy_check.yml
      ansible.builtin.include_role:
        name: llm_serving.gke.verification
        tasks_from: policy_check
    - name: Write the checks
      ansible.builtin.copy:
        content: "{{ __verification_checks | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def _policy(kind, group):
    return {"kind": kind, "metadata": {"name": f"{kind}-{group}"},
            "spec": {"targetRef": {"group": group, "kind": "InferencePool", "name": POOL}}}


def _run(tmp_path, ansible_playbook, route_group, policy_groups):
    results = [{"item": kind, "resources": [_policy(kind, g) for g in policy_groups]}
               for kind in ("HealthCheckPolicy", "GCPBackendPolicy")]
    extra = {"given": {"policies": {"results": results},
                       "pool_refs": [{"group": route_group, "kind": "InferencePool", "name": POOL}]},
             "out": str(tmp_path / "checks.json")}
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    proc = ansible_playbook(PLAYBOOK, "-e", f"@{tmp_path}/vars.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    checks = json.loads((tmp_path / "checks.json").read_text())
    assert [c["name"] for c in checks] == ["gke_policies_target_route_backend"]
    return checks[0]


@pytest.mark.parametrize("route_group", [V1, V1ALPHA2])
def test_policies_for_both_groups_cover_the_route(tmp_path, ansible_playbook, route_group):
    check = _run(tmp_path, ansible_playbook, route_group, [V1, V1ALPHA2])
    assert check["passed"] is True
    assert f"{route_group}/InferencePool/{POOL}" in check["measured"]


def test_policies_on_the_v1_pool_miss_a_route_on_v1alpha2(tmp_path, ansible_playbook):
    check = _run(tmp_path, ansible_playbook, V1ALPHA2, [V1])
    assert check["passed"] is False
    assert f"HealthCheckPolicy for {V1ALPHA2}/InferencePool {POOL}" in check["measured"]
    assert f"GCPBackendPolicy for {V1ALPHA2}/InferencePool {POOL}" in check["measured"]
