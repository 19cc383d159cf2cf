"""The simulated vLLM by (vLLM version, accelerator): flags, engine and metric names from the collection's table."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from localcluster import vllm_flags, vllm_sim
from tests.unit.vllm_sim_helpers import SHARED_PREFIX as SHARED
from tests.unit.vllm_sim_helpers import exposition, serve, sim_config

P3_GPU_ARGS = ["--model=/mnt/models", "--served-model-name=Qwen/Qwen2.5-3B-Instruct", "--dtype=half",
               "--max-model-len=2048", "--gpu-memory-utilization=0.75", "--enable-prefix-caching", "--block-size=16",
               "--disable-log-requests", "--show-hidden-metrics-for-version=0.7"]


def _config(argv, version, accelerator):
    return sim_config(argv, version, accelerator, devices=4)


def _exposed(engine):
    return {s.name: s.value for f in text_string_to_metric_families(exposition(engine)) for s in f.samples}


def test_async_scheduling_crash_loops_0_8_4_but_not_0_12():
    with pytest.raises(vllm_flags.VllmArgumentError) as err:
        vllm_flags.parse_vllm_args(["--async-scheduling"], vllm_version="0.8.4")
    assert "unrecognized arguments: --async-scheduling" in err.value.output and err.value.exit_code == 2
    assert vllm_flags.parse_vllm_args(["--async-scheduling"], vllm_version="0.12.0").vllm_version == "0.12.0"


def test_filter_and_simulator_accept_the_same_flags():
    # One table: every flag the filter accepts for a release, the simulated parser accepts too.
    from localcluster.vllm_flags import versions
    for version in versions.VLLM_RELEASES:
        parser = vllm_flags.build_parser(vllm_flags.API_SERVER_PROG, version)
        options = {opt for action in parser._actions for opt in action.option_strings}
        assert versions.flags_for(version) <= options | {"-h", "--help"}, version


def test_block_size_choices_per_release():
    with pytest.raises(vllm_flags.VllmArgumentError) as err:
        vllm_flags.parse_vllm_args(["--block-size=1"], vllm_version="0.8.4")
    assert "invalid choice" in err.value.output
    assert vllm_flags.parse_vllm_args(["--block-size=1"], vllm_version="0.10.1.1").block_size == 1


@pytest.mark.parametrize("argv", [["-O3"], ["-O", "3"], ["-tp", "4"]])
def test_short_options(argv):
    vllm_flags.parse_vllm_args(argv, vllm_version="0.8.4")


def test_t4_on_0_8_4_runs_v0_with_v0_metric_names_and_its_hidden_hit_rate():
    config = _config(P3_GPU_ARGS, "0.8.4", "nvidia-tesla-t4")
    assert config.engine == "v0"
    engine = serve(config, [SHARED + " one", SHARED + " two"])
    exposed = _exposed(engine)
    assert "vllm:gpu_cache_usage_perc" in exposed and "vllm:kv_cache_usage_perc" not in exposed
    assert "vllm:prefix_cache_hits_total" not in exposed and "vllm:prefix_cache_queries_total" not in exposed
    assert 0 < exposed["vllm:gpu_prefix_cache_hit_rate"] < 1


def test_v0_hit_rate_gauge_stays_hidden_without_the_flag():
    config = _config(P3_GPU_ARGS[:-1], "0.8.4", "nvidia-tesla-t4")
    assert "vllm:gpu_prefix_cache_hit_rate" not in _exposed(serve(config, [SHARED]))


def test_v0_leaves_prefix_caching_off_unless_asked():
    assert _config(["--dtype=half"], "0.8.4", "nvidia-tesla-t4").enable_prefix_caching is False
    assert _config(["--dtype=half"], "0.11.0", "nvidia-tesla-t4").enable_prefix_caching is True


def test_tpu_and_newer_t4_releases_run_v1_with_v1_names():
    for version, accelerator in (("0.10.1.1", "tpu-v6e-slice"), ("0.11.0", "nvidia-tesla-t4"),
                                 ("0.10.1.1", "nvidia-l4")):
        config = _config(["--max-model-len=2048"], version, accelerator)
        assert config.engine == "v1", (version, accelerator)
        exposed = _exposed(serve(config, [SHARED]))
        assert "vllm:kv_cache_usage_perc" in exposed and "vllm:prefix_cache_hits_total" in exposed


def test_startup_log_says_which_engine():
    lines = "\n".join(vllm_sim.startup_log_lines(_config(P3_GPU_ARGS, "0.8.4", "nvidia-tesla-t4"), "0.0.0.0", 8000))
    assert "Falling back to V0" in lines and "Initializing a V0 LLM engine (v0.8.4)" in lines


def test_standalone_defaults_to_the_newest_release_which_runs_v1_on_a_t4():
    config, _host, _port = vllm_sim.parse_standalone_args(["--port", "0", "--enable-prefix-caching"])
    assert config.vllm_version == vllm_flags.versions.VLLM_RELEASES[-1] and config.engine == "v1"
    config, _host, _port = vllm_sim.parse_standalone_args(["--vllm-version", "0.8.4", "--dtype=half"])
    assert config.engine == "v0"
