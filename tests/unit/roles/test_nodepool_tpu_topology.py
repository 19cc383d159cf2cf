"""nodepool role input checks: nodepool_profile.tpu_topology with the collection's one TPU table (issue 12 item 6),
the capacity variables of item 7.

Runs the role's own validate tasks (tasks_from: validate, no API call) with ansible-playbook.
"""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

PLAYBOOK = """
- name: Validate node pool inputs
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the role's input checks
      ansible.builtin.include_role:
        name: llm_serving.gke.nodepool
        tasks_from: validate
"""


def validate(tmp_path, topology, replicas=1, max_nodes=None, **extra):
    (tmp_path / "playbook.yml").write_text(PLAYBOOK)
    variables = {"nodepool_name": "tpu-pool", "nodepool_location": "europe-west4-a", "nodepool_cluster": "c1",
                 "nodepool_replicas": replicas, "nodepool_initial_node_count": 1,
                 "nodepool_profile": {"machine_type": "ct6e-standard-4t", "accelerator_type": "tpu-v6e-slice",
                                      "accelerator_count": 4, "tpu_topology": topology}}
    if max_nodes is not None:
        variables["nodepool_max_node_count"] = max_nodes
    variables.update(extra)
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    command = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), str(tmp_path / "playbook.yml"),
               "-i", "localhost,", "-c", "local", "-e", f"@{tmp_path}/vars.json"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_own_single_host_topology_2x2_of_ct6e_standard_4t_is_accepted(tmp_path):
    proc = validate(tmp_path, "2x2", replicas=3)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize(("topology", "max_nodes", "expected"), [
    ("2x2x1", None, "nodepool_profile.tpu_topology: '2x2x1' is not a TPU v6e slice shape for ct6e-standard-4t"),
    ("4x4", 3, "max_node_count must be 4"),
])
def test_shapes_v6e_does_not_have_or_wrong_slice_sizes_are_refused(tmp_path, topology, max_nodes, expected):
    proc = validate(tmp_path, topology, max_nodes=max_nodes)
    assert proc.returncode != 0 and expected in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_capacity_variables_pass_the_role_argument_spec(tmp_path):
    proc = validate(tmp_path, "", nodepool_reservation_affinity={"consume_reservation_type": "SPECIFIC_RESERVATION",
                                                                 "values": ["tpu-res"]},
                    nodepool_fallback_locations=["europe-west4-b"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = validate(tmp_path, "", nodepool_reservation_affinity={"consume_reservation_type": "SOMETIMES"})
    assert proc.returncode != 0 and "consume_reservation_type" in proc.stdout, proc.stdout[-3000:]
