"""nodepool role input checks: nodepool_profile.tpu_topology with the collection's one TPU table (issue 12 item 6),
the capacity variables of item 7.

Runs the role's own validate tasks (tasks_from: validate, no API call) with ansible-playbook.
"""
import json
import os
import subprocess

import pytest

from tests.unit.once_per_session import once_per_session

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

PLAY = """
- name: Validate node pool inputs ({case_id})
  hosts: localhost
  gather_facts: false
  vars: {variables}
  tasks:
    - name: Run the role's input checks
      block:
        - name: Run the role's input checks
          ansible.builtin.include_role:
            name: llm_serving.gke.nodepool
            tasks_from: validate
        - name: Record the success
          ansible.builtin.set_fact:
            results: "{{{{ results | default({{}}) | combine({{'{case_id}': {{'failed': false}}}}) }}}}"
      rescue:
        - name: Record the failure
          ansible.builtin.set_fact:
            results: >-
              {{{{ results | default({{}}) | combine({{'{case_id}': {{'failed': true,
                                                                  'result': ansible_failed_result | to_json}}}}) }}}}
"""

WRITE = """
- name: Write the results
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the results
      ansible.builtin.copy:
        content: "{{ results | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""

_CASES = {}


def validate(topology, replicas=1, max_nodes=None, **extra):
    """Register a case (one play of the module's one playbook run, with its variables as play vars, so no case
    sees another's); returns its id."""
    variables = {"nodepool_name": "tpu-pool", "nodepool_location": "europe-west4-a", "nodepool_cluster": "c1",
                 "nodepool_replicas": replicas, "nodepool_initial_node_count": 1,
                 "nodepool_profile": {"machine_type": "ct6e-standard-4t", "accelerator_type": "tpu-v6e-slice",
                                      "accelerator_count": 4, "tpu_topology": topology}}
    if max_nodes is not None:
        variables["nodepool_max_node_count"] = max_nodes
    variables.update(extra)
    case_id = f"case{len(_CASES)}"
    _CASES[case_id] = variables
    return case_id


def _run_all(tmp):
    plays = "".join(PLAY.format(case_id=case_id, variables=json.dumps(variables))
                    for case_id, variables in _CASES.items())
    (tmp / "playbook.yml").write_text(plays + WRITE)
    command = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), str(tmp / "playbook.yml"),
               "-i", "localhost,", "-c", "local", "-e", f"out={tmp / 'out.json'}"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp / "out.json").read_text())


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return once_per_session(tmp_path_factory, "nodepool-validate", _run_all)


ACCEPTED = validate("2x2", replicas=3)


def test_own_single_host_topology_2x2_of_ct6e_standard_4t_is_accepted(results):
    assert results[ACCEPTED] == {"failed": False}, results[ACCEPTED]


@pytest.mark.parametrize(("case_id", "expected"), [
    (validate("2x2x1"), "nodepool_profile.tpu_topology: '2x2x1' is not a TPU v6e slice shape for ct6e-standard-4t"),
    (validate("4x4", max_nodes=3), "max_node_count must be 4"),
], ids=["2x2x1-None", "4x4-3"])
def test_shapes_v6e_does_not_have_or_wrong_slice_sizes_are_refused(results, case_id, expected):
    result = results[case_id]
    assert result["failed"] is True and expected in json.loads(result["result"])["msg"], result


CAPACITY_OK = validate("", nodepool_reservation_affinity={"consume_reservation_type": "SPECIFIC_RESERVATION",
                                                          "values": ["tpu-res"]},
                       nodepool_fallback_locations=["europe-west4-b"])
CAPACITY_BAD = validate("", nodepool_reservation_affinity={"consume_reservation_type": "SOMETIMES"})


def test_capacity_variables_pass_the_role_argument_spec(results):
    assert results[CAPACITY_OK] == {"failed": False}, results[CAPACITY_OK]
    bad = results[CAPACITY_BAD]
    assert bad["failed"] is True and "consume_reservation_type" in json.loads(bad["result"])["msg"], bad
