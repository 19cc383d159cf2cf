"""teardown_plan: a pool shared with a deployed pattern is kept; no implicit "all"; what still bills."""
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.filter.teardown_plan import FilterModule
from ansible_collections.llm_serving.gke.plugins.module_utils import teardown_plan as tp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
with open(os.path.join(ROOT, "roles", "pattern", "defaults", "main.yml")) as fh:
    CATALOG = yaml.safe_load(fh)["pattern_catalog"]
FILTERS = FilterModule().filters()
NS = "llm-d-inference-scheduling"


def llmisvc(name, pattern=None, replicas=1, namespace=NS, selector=None, deleting=False):
    meta = {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "llm_serving.gke"}}
    if pattern:
        meta["labels"][tp.PATTERN_LABEL] = pattern
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"replicas": replicas, "template": {"nodeSelector": selector or {}}}}


P1 = llmisvc("qwen2-3b-pattern1", "p1-tpu", 1)
P3 = llmisvc("qwen2-3b-pattern3", "p3-tpu", 3)
P3GPU = llmisvc("qwen2-3b-pattern3-gpu", "p3-gpu", 3)


def test_shared_tpu_pool_is_kept_while_the_other_pattern_runs():
    plan = tp.plan(["p1-tpu"], CATALOG, [P1, P3, P3GPU])
    assert plan["pool_step"] == {"p1-tpu": "none"}
    (pool,) = plan["pools"]
    assert pool["name"] == "tpu-v6e-pool" and pool["action"] == "keep"
    assert pool["kept_for"] == [{"llmisvc": f"{NS}/qwen2-3b-pattern3", "pattern": "p3-tpu", "reason": "pattern p3-tpu",
                                 "replicas": 3, "nodes": 3}]
    assert pool["nodes_needed"] == 3


def test_shared_pool_is_scaled_once_at_the_last_given_pattern():
    plan = tp.plan(["p1-tpu", "p3-tpu"], CATALOG, [P1, P3])
    assert plan["pool_step"] == {"p1-tpu": "none", "p3-tpu": "scaled_to_zero"}
    plan = tp.plan(["p3-tpu", "p1-tpu", "p3-tpu"], CATALOG, [P1, P3], delete_pools=True)
    assert plan["patterns"] == ["p3-tpu", "p1-tpu"]
    assert plan["pool_step"] == {"p3-tpu": "none", "p1-tpu": "absent"}


def test_pool_of_the_pattern_alone_is_scaled_and_other_pools_do_not_matter():
    plan = tp.plan(["p3-gpu"], CATALOG, [P1, P3, P3GPU])
    assert plan["pool_step"] == {"p3-gpu": "scaled_to_zero"}
    assert [p["name"] for p in plan["pools"]] == ["gpu-t4-pool"]


def test_an_llmisvc_being_deleted_does_not_keep_the_pool():
    plan = tp.plan(["p1-tpu"], CATALOG, [P1, llmisvc("qwen2-3b-pattern3", "p3-tpu", 3, deleting=True)])
    assert plan["pool_step"] == {"p1-tpu": "scaled_to_zero"}


def test_unlabelled_llmisvc_matched_by_node_selector():
    by_accel = llmisvc("custom-tpu", selector=dict(CATALOG["p1-tpu"]["accelerator"]["node_selector"]))
    plan = tp.plan(["p1-tpu"], CATALOG, [by_accel])
    assert plan["pools"][0]["action"] == "keep"
    assert plan["pools"][0]["kept_for"][0]["reason"].startswith("nodeSelector cloud.google.com/gke-tpu-accelerator")
    by_pool = llmisvc("custom-any", selector={tp.NODEPOOL_LABEL: "tpu-v6e-pool"})
    assert tp.plan(["p1-tpu"], CATALOG, [by_pool])["pools"][0]["action"] == "keep"
    other_pool = llmisvc("custom-other", selector={tp.NODEPOOL_LABEL: "gpu-t4-pool"})
    assert tp.plan(["p1-tpu"], CATALOG, [other_pool])["pools"][0]["action"] == "scaled_to_zero"


def test_overrides_apply_to_every_entry():
    # The inventory moves every pattern to another namespace: the llmisvc there is p1's own, not another's.
    overrides = {"namespace": "team-a"}
    assert tp.namespaces_to_read(["p1-tpu"], CATALOG, overrides) == ["team-a"]
    own = llmisvc("qwen2-3b-pattern1", "p1-tpu", namespace="team-a")
    assert tp.plan(["p1-tpu"], CATALOG, [own], overrides)["pool_step"] == {"p1-tpu": "scaled_to_zero"}


@pytest.mark.parametrize("given", [[], None, "", [""]])
def test_no_argument_is_refused_with_the_variable_and_the_choices(given):
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS["teardown_namespaces"](given, CATALOG)
    assert "teardown_patterns is empty" in str(err.value)
    assert "no implicit 'all'" in str(err.value)
    assert "choices: p1-tpu, p3-gpu, p3-tpu" in str(err.value)


def test_unknown_pattern_is_refused():
    pattern = r"teardown_patterns names p9, not in the pattern catalog .*choices: p1-tpu, p3-gpu, p3-tpu"
    with pytest.raises(AnsibleFilterError, match=pattern):
        FILTERS["teardown_plan"](["p3-gpu", "p9"], CATALOG, [])


def test_comma_separated_string_is_accepted():
    assert FILTERS["teardown_plan"]("p1-tpu, p3-tpu", CATALOG, [])["patterns"] == ["p1-tpu", "p3-tpu"]


def test_billable_report_names_each_item_with_its_command():
    plan = tp.plan(["p1-tpu"], CATALOG, [P1, P3])
    lines = FILTERS["teardown_billable"](plan, CATALOG, cluster="c1", location="europe-west4-a", project="pr",
                                         cluster_pools=["default-pool", "tpu-v6e-pool"])
    text = "\n".join(lines)
    assert "Node pool tpu-v6e-pool: KEPT" in text and f"{NS}/qwen2-3b-pattern3 (pattern p3-tpu, 3 replica(s)" in text
    assert ("gcloud container clusters resize c1 --node-pool default-pool --num-nodes 0 --location europe-west4-a"
            in text)
    assert "kubectl delete gateway inference-gateway -n opendatahub" in text
    assert "Load balancer logging" in text
    assert "gcloud container clusters delete c1 --location europe-west4-a --project pr" in text
    scaled = tp.billable_report(tp.plan(["p3-gpu"], CATALOG, []), CATALOG, cluster="c1", location="z")
    assert any(line.startswith("Node pool gpu-t4-pool: scaled to 0 nodes") and
               "gcloud container node-pools delete gpu-t4-pool --cluster c1 --location z" in line for line in scaled)
    assert any("gcloud container node-pools list --cluster c1 --location z" in line for line in scaled)
    missing = tp.billable_report(tp.plan(["p3-gpu"], CATALOG, []), CATALOG, cluster="c1",
                                 cluster_pools=["default-pool"])
    assert "Node pool gpu-t4-pool: does not exist in cluster c1 (nothing to remove)." in missing
    assert any("default-pool: not touched by this teardown; its nodes bill (it runs the cluster's system pods"
               in line for line in missing)
