"""vllm_args_check against the generated vLLM version table (plugins/module_utils/vllm_versions.py)."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.filter.vllm_args_check import vllm_args_check
from ansible_collections.llm_serving.gke.plugins.module_utils import vllm_versions


def test_async_scheduling_is_refused_for_the_t4_image_and_names_the_release_that_added_it():
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args_check(["--async-scheduling"], vllm_version="0.8.4")
    assert "vLLM 0.8.4 does not accept --async-scheduling" in str(err.value)
    assert "added in vLLM 0.10.0" in str(err.value)


def test_async_scheduling_passes_where_the_release_has_it():
    assert vllm_args_check(["--async-scheduling"], vllm_version="0.12.0") == ["--async-scheduling"]


def test_a_removed_flag_names_the_release_that_removed_it():
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args_check(["--num-scheduler-steps=8"], vllm_version="0.11.0")
    assert "removed in vLLM 0.10.1.1" in str(err.value)
    assert vllm_args_check(["--num-scheduler-steps=8"], vllm_version="0.8.4") == ["--num-scheduler-steps=8"]


def test_disable_log_requests_is_still_accepted_by_0_12_as_deprecated():
    # vllm-project/vllm v0.12.0 vllm/engine/arg_utils.py: add_argument("--disable-log-requests", ..., deprecated=True)
    assert vllm_args_check(["--disable-log-requests"], vllm_version="0.12.0") == ["--disable-log-requests"]
    assert "--disable-log-requests" in vllm_versions.DEPRECATED_FLAGS["0.12.0"]


@pytest.mark.parametrize("args", [["--dtype=bfloat16"], ["--dtype", "bfloat16"]])
def test_bfloat16_is_refused_on_a_t4(args):
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args_check(args, vllm_version="0.8.4", accelerator="nvidia-tesla-t4")
    assert "compute capability 8.0" in str(err.value) and "--dtype=half" in str(err.value)


def test_bfloat16_passes_on_an_l4():
    assert vllm_args_check(["--dtype=bfloat16"], vllm_version="0.8.4", accelerator="nvidia-l4") == [
        "--dtype=bfloat16"]


def test_block_size_choices_follow_the_release():
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args_check(["--block-size=24"], vllm_version="0.10.1.1")
    assert "--block-size=24 is not one of" in str(err.value)
    with pytest.raises(AnsibleFilterError):
        vllm_args_check(["--block-size=1"], vllm_version="0.8.4")  # 0.8.4: choices 8..128
    assert vllm_args_check(["--block-size=1"], vllm_version="0.9.0.1") == ["--block-size=1"]


def test_unknown_dtype_value_is_refused():
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args_check(["--dtype=fp64"], vllm_version="0.8.4")
    assert "--dtype=fp64" in str(err.value)


@pytest.mark.parametrize("args", [["-O3"], ["-O", "3"], ["-tp", "4"], ["-q", "awq"]])
def test_short_options_vllm_accepts(args):
    assert vllm_args_check(args, vllm_version="0.8.4") == args


def test_a_version_older_than_the_table_is_an_error_naming_the_variable():
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args_check(["--dtype=half"], vllm_version="0.6.0")
    assert "vllm_version" in str(err.value) and "0.8.4" in str(err.value)


def test_table_covers_the_catalog_images_and_0_12():
    assert {"0.8.4", "0.10.1.1", "0.12.0"} <= set(vllm_versions.VLLM_RELEASES)
    assert vllm_versions.table_release("0.10.1") == "0.10.0"
