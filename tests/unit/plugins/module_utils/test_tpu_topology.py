"""Unit tests of the TPU machine-type table and topology checks (tpu_topology)."""
import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_errors as errs
from ansible_collections.llm_serving.gke.plugins.module_utils import tpu_topology as topo


def test_topology_option_name_is_the_callers():
    with pytest.raises(errs.GkeError, match="nodepool_profile.tpu_topology"):
        topo.validate_tpu("ct6e-standard-4t", "2x2x1", option="nodepool_profile.tpu_topology")
