"""The nodepool role passes its inputs to llm_serving.gke.gke_node_pool as the gcloud plan maps them
(plugins/module_utils/gcloud_commands.py nodepool_params: filters node_pool_params, which roles/nodepool/vars/main.yml
``__nodepool_params`` and so tasks/present.yml use, and gcloud_node_pool_create).

The options of present.yml's gke_node_pool task are templated by Ansible with the role's defaults and vars for each
case (no module run, no cluster) and compared with nodepool_params of the same inputs: every input reaches its
parameter, every parameter reaches the task. The NodePool fields and gcloud flags both derive from those parameters
(gke_node_pool_spec.build_node_pool, gcloud_commands.NODE_POOL_FLAGS).
"""
import json
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.llm_serving.gke.plugins.module_utils.gcloud_commands import nodepool_params
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_node_pool_spec import NODE_POOL_ARGUMENT_SPEC

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "nodepool"
# Options of the task that are GKE coordinates and run settings, not the pool (nodepool_params leaves them out).
NOT_MAPPED = {"project", "location", "cluster", "fallback_locations", "recreate", "wait", "timeout", "api_endpoint",
              "compute_endpoint"}

TPU = {"machine_type": "ct6e-standard-4t", "accelerator_type": "tpu-v6e-slice", "accelerator_count": 4,
       "tpu_topology": "2x2", "labels": {"cloud.google.com/gke-tpu-topology": "2x2"},
       "taints": [{"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"}]}
T4 = {"machine_type": "n1-standard-8", "accelerator_type": "nvidia-tesla-t4", "accelerator_count": 1,
      "gpu_driver_version": "latest", "taints": ["nvidia.com/gpu=present:NoSchedule"]}
BASE = {"nodepool_name": "pool", "nodepool_min_node_count": 0, "nodepool_max_node_count": 3,
        "nodepool_initial_node_count": 1, "nodepool_spot": False, "nodepool_location_policy": "",
        "nodepool_node_locations": [], "nodepool_labels": {}, "nodepool_reservation_affinity": {}}
CASES = {
    "tpu": {"nodepool_profile": TPU},
    "tpu-spot-any-zones": {"nodepool_profile": TPU, "nodepool_spot": True, "nodepool_location_policy": "ANY",
                           "nodepool_node_locations": ["europe-west4-a", "europe-west4-b"]},
    "t4-labels-reservation": {"nodepool_profile": T4, "nodepool_labels": {"team": "llm"},
                              "nodepool_min_node_count": 1, "nodepool_initial_node_count": 2,
                              "nodepool_reservation_affinity": {"consume_reservation_type": "SPECIFIC_RESERVATION",
                                                                "values": ["r1"]}},
    "t4-no-driver-count-unset": {"nodepool_profile": {**T4, "gpu_driver_version": "", "accelerator_count": None}},
    # An AWX survey answer: the zones as one comma-separated text.
    "zones-as-survey-text": {"nodepool_profile": TPU, "nodepool_node_locations": " europe-west4-a, ,europe-west4-b"},
}


def _plan(inputs):
    """nodepool_params of a case's role inputs."""
    return nodepool_params(inputs["nodepool_name"], inputs["nodepool_profile"], inputs["nodepool_min_node_count"],
                           inputs["nodepool_max_node_count"], inputs["nodepool_initial_node_count"],
                           inputs["nodepool_spot"], inputs["nodepool_location_policy"],
                           inputs["nodepool_node_locations"], inputs["nodepool_labels"],
                           inputs["nodepool_reservation_affinity"])


def _present_task():
    tasks = yaml.safe_load((ROLE / "tasks" / "present.yml").read_text())
    return next(t for t in tasks if "llm_serving.gke.gke_node_pool" in t)


def _case_tasks():
    """present.yml's gke_node_pool options as one set_fact, with the role's defaults and vars, the task's vars and
    the case's inputs as task vars (omitted options dropped)."""
    task = _present_task()
    variables = {**yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
                 **yaml.safe_load((ROLE / "vars" / "main.yml").read_text()),
                 **{k: v for k, v in task["vars"].items() if k != "__nodepool_options"},
                 **{name: "{{ case.vars['" + name + "'] }}" for name in BASE.keys() | {"nodepool_profile"}},
                 "__options": task["llm_serving.gke.gke_node_pool"]}
    return yaml.safe_dump([{"name": "Template the gke_node_pool options of present.yml", "vars": variables,
                            "ansible.builtin.set_fact": {
                                "results": "{{ results | default({}) | combine({case.id: __options}) }}"}}])


@pytest.fixture(scope="module")
def rendered(role_cases):
    return role_cases("nodepool-params-agree", _case_tasks(),
                      [{"id": case_id, "vars": {**BASE, **inputs}} for case_id, inputs in CASES.items()])


def _drop_none(obj):
    """Without None values and Ansible's omit placeholders (an omitted option is not passed: the module sees None)."""
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items()
                if v is not None and not (isinstance(v, str) and v.startswith("__omit_place_holder__"))}
    return obj


@pytest.mark.parametrize("case_id", list(CASES))
def test_the_plan_maps_the_role_inputs_as_present_yml(rendered, case_id):
    role = {k: v for k, v in rendered[case_id].items() if k not in NOT_MAPPED}
    plan = _plan({**BASE, **CASES[case_id]})
    assert _drop_none(plan) == _drop_none(role), json.dumps(role, sort_keys=True)


def test_every_pool_option_of_present_yml_is_mapped():
    options = set(_present_task()["llm_serving.gke.gke_node_pool"]) - NOT_MAPPED
    assert options == set(nodepool_params("p", TPU))


@pytest.mark.parametrize("case_id", list(CASES))
def test_the_plan_passes_the_module_argument_spec(case_id):
    """What the role sends is accepted as the module would check it (a None among a suboption's choices is not)."""
    plan = _plan({**BASE, **CASES[case_id]})
    options = {k: v for k, v in plan.items() if v is not None}  # the task omits what is None
    checked = ArgumentSpecValidator(NODE_POOL_ARGUMENT_SPEC).validate(
        dict(options, location="europe-west4", cluster="c"))
    assert checked.error_messages == []
