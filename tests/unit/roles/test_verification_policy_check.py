"""roles/verification: the GKE policies must target exactly the pool (group/kind/name) the HTTPRoute uses.

KServe v0.20 creates the InferencePool in both API groups under one name and points the route at the
inference.networking.x-k8s.io/v1alpha2 pool until the gateway rejects it (kserve/kserve v0.20.0
pkg/controller/v1alpha2/llmisvc/router.go); GKE attaches a policy only to the backend its targetRef names.
Runs the role's policy_check.yml with the route / policies as the API would return them (no cluster).
"""
import pytest

V1, V1ALPHA2 = "inference.networking.k8s.io", "inference.networking.x-k8s.io"
POOL = "m-inference-pool"

# One case: policy_check.yml starts from an empty check list each time, so no case sees another's check.
CASE = """
- name: Set the facts routing.yml would have set (extra vars could not be overwritten by the role)
  ansible.builtin.set_fact:
    __verification_checks: []
    __verification_policies: "{{ case.policies }}"
    __verification_pool_refs: "{{ case.pool_refs }}"
- name: Run policy_check.yml
  ansible.builtin.include_role:
    name: llm_serving.gke.verification
    tasks_from: policy_check
- name: Record the checks
  ansible.builtin.set_fact:
    results: "{{ results | default({}) | combine({case.id: __verification_checks}) }}"
"""


def _policy(kind, group):
    return {"kind": kind, "metadata": {"name": f"{kind}-{group}"},
            "spec": {"targetRef": {"group": group, "kind": "InferencePool", "name": POOL}}}


_CASES = {}


def _case(route_group, policy_groups):
    """Register a case of the module's one playbook run; returns its id."""
    results = [{"item": kind, "resources": [_policy(kind, g) for g in policy_groups]}
               for kind in ("HealthCheckPolicy", "GCPBackendPolicy")]
    case_id = f"case{len(_CASES)}"
    _CASES[case_id] = {"id": case_id, "policies": {"results": results},
                       "pool_refs": [{"group": route_group, "kind": "InferencePool", "name": POOL}]}
    return case_id


@pytest.fixture(scope="module")
def checks(role_cases):
    return role_cases("verification-policy-check", CASE, list(_CASES.values()))


def _check(checks, case_id):
    assert [c["name"] for c in checks[case_id]] == ["gke_policies_target_route_backend"]
    return checks[case_id][0]


@pytest.mark.parametrize("case_id", [_case(V1, [V1, V1ALPHA2]), _case(V1ALPHA2, [V1, V1ALPHA2])],
                         ids=[V1, V1ALPHA2])
def test_policies_for_both_groups_cover_the_route(checks, case_id):
    check = _check(checks, case_id)
    assert check["passed"] is True
    route_group = _CASES[case_id]["pool_refs"][0]["group"]
    assert f"{route_group}/InferencePool/{POOL}" in check["measured"]


MISSED = _case(V1ALPHA2, [V1])


def test_policies_on_the_v1_pool_miss_a_route_on_v1alpha2(checks):
    check = _check(checks, MISSED)
    assert check["passed"] is False
    assert f"HealthCheckPolicy for {V1ALPHA2}/InferencePool {POOL}" in check["measured"]
    assert f"GCPBackendPolicy for {V1ALPHA2}/InferencePool {POOL}" in check["measured"]
