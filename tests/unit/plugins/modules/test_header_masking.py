"""The modules that send HTTP requests to the endpoint take credentials in `headers` (Authorization): those are
no_log values, which Ansible masks in the logged module arguments and in every result it prints."""
import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llm_serving.gke.plugins.modules import http_checks, inference_benchmark, prefix_cache_check

REQUIRED = {
    http_checks: {"requests": []},
    inference_benchmark: {"base_url": "http://gw", "model": "m"},
    prefix_cache_check: {"base_url": "http://gw", "model": "m", "metrics_urls": ["http://pod/metrics"]},
}


@pytest.mark.parametrize("module", REQUIRED, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_header_values_are_no_log_values(module):
    with patch_module_args(dict(REQUIRED[module], headers={"Authorization": "Bearer s3cret", "X-Team": "blue"})):
        ansible_module = AnsibleModule(argument_spec=module.ARGUMENT_SPEC)
    assert {"Bearer s3cret", "blue"} <= ansible_module.no_log_values
