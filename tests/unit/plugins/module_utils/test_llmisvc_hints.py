"""Hints say what the real components do (issue 11, item 10).

- KServe v0.20 watches LLMInferenceServiceConfig (kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/
  controller.go, SetupWithManager / enqueueOnLLMInferenceServiceConfigChange) and prefers a namespace-local
  preset (config_merge.go, getConfig): after a preset change nothing has to be recreated.
- No role of this collection creates the Gateway (role llm_serving.gke.llmisvc only checks it in pre-flight).
"""
import os

import yaml
from test_llmisvc_diagnosis import snapshot_of

from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc as lm
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_hints as lmh

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "llmisvc")
ROLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles")


def primary(name):
    with open(os.path.join(FIXTURES, name + ".yaml")) as handle:
        case = yaml.safe_load(handle)
    return lm.assess(snapshot_of(case)).primary({})


def all_hints():
    findings = []
    for name in sorted(os.listdir(FIXTURES)):
        with open(os.path.join(FIXTURES, name)) as handle:
            case = yaml.safe_load(handle)
        findings += lm.assess(snapshot_of(case), **case.get("options", {})).findings
    return [f.hint for f in findings] + [lmh.ROUTE_TIMEOUTS_HINT, lmh.GATEWAY_NOT_FOUND_HINT]


def test_route_timeouts_hint_says_the_controller_reconciles_by_itself():
    hint = primary("route_timeouts_rejected").hint
    assert "namespace-local kserve-config-llm-router-route preset without timeouts" in hint
    assert "re-renders the route by itself" in hint
    assert "no need to recreate the llmisvc" in hint
    assert "then recreate" not in hint


def test_gateway_not_found_hint_does_not_send_users_to_a_role_that_does_not_create_it():
    finding = primary("gateway_not_found")
    assert finding.reason == "GatewayNotFound"
    assert "create Gateway opendatahub/inference-gateway" in finding.hint
    assert "no role of this collection creates it" in finding.hint
    assert "(role llm_serving.gke.llmisvc)" not in finding.hint
    assert "spec.router.gateway.refs" in finding.hint


def test_no_hint_tells_users_to_recreate_the_llmisvc_or_that_a_role_creates_the_gateway():
    for hint in all_hints():
        assert "then recreate the llmisvc" not in hint, hint
        assert "create the Gateway (role" not in hint, hint


def test_the_llmisvc_role_indeed_creates_no_gateway():
    """The claim in the hint, checked against the roles: no task creates a Gateway (they only read it)."""
    for root, _dirs, files in os.walk(ROLES):
        for name in files:
            if not name.endswith((".yml", ".yaml", ".j2")):
                continue
            with open(os.path.join(root, name)) as handle:
                text = handle.read()
            for block in text.split("\n- "):
                if "kind: Gateway\n" in block and ("state: present" in block or "kubernetes.core.k8s:" in block):
                    raise AssertionError(f"{os.path.join(root, name)} seems to create a Gateway: {block[:200]}")
