"""hack/vllm_flag_table.py: what it extracts from a vLLM wheel (a tiny synthetic wheel, no download)."""
import importlib.util
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("vllm_flag_table", ROOT / "hack" / "vllm_flag_table.py")
generator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generator)

ARG_UTILS = '''
import argparse
from vllm.config import CacheConfig


def _compute_kwargs(cls):
    kwargs = {}
    kwargs["action"] = argparse.BooleanOptionalAction
    return kwargs


class EngineArgs:
    def _is_v1_supported_oracle(self, model_config):
        if current_platform.get_device_capability().major < 8:
            return False

    @staticmethod
    def add_cli_args(parser):
        cache_kwargs = get_kwargs(CacheConfig)
        parser.add_argument("--block-size", **cache_kwargs["block_size"])
        parser.add_argument("--enable-prefix-caching", **{**cache_kwargs["enable_prefix_caching"], "default": None})
        parser.add_argument("--dtype", choices=["auto", "half", "bfloat16"])
        parser.add_argument("--tensor-parallel-size", "-tp", type=int)
        parser.add_argument("%s", action="store_true", deprecated=True)
'''
CONFIG = '''
from typing import Literal, Optional
BlockSize = Literal[8, 16, 32]


class CacheConfig:
    block_size: BlockSize = 16
    enable_prefix_caching: Optional[bool] = None
'''
CLI_ARGS = '''
class FrontendArgs:
    port: int = 8000
    disable_fastapi_docs: bool = False


def make_arg_parser(parser):
    frontend_kwargs = get_kwargs(FrontendArgs)
    for key, value in frontend_kwargs.items():
        parser.add_argument(f"--{key.replace('_', '-')}", **value)
'''
V0_METRICS = '''
class Metrics:
    def __init__(self):
        self.gauge = self._gauge_cls(name="vllm:gpu_cache_usage_perc", documentation="x")
        if self.show_hidden_metrics:
            self.rate = self._gauge_cls(name="vllm:gpu_prefix_cache_hit_rate", documentation="x")
        self.ok = self._counter_cls(name="vllm:request_success_total", documentation="x")
'''
V1_METRICS = '''
import prometheus_client
hits = prometheus_client.Counter(name="vllm:prefix_cache_hits", documentation="x")
usage = prometheus_client.Gauge(name="vllm:kv_cache_usage_perc", documentation="x")
'''


def _wheel(tmp_path, version, old_flag, v0_engine):
    path = tmp_path / f"vllm-{version}-cp38-abi3-manylinux1_x86_64.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("vllm/engine/arg_utils.py", ARG_UTILS % old_flag)
        whl.writestr("vllm/config.py", CONFIG)
        whl.writestr("vllm/entrypoints/openai/cli_args.py", CLI_ARGS)
        whl.writestr("vllm/engine/metrics.py", V0_METRICS)
        whl.writestr("vllm/engine/llm_engine.py", "class LLMEngine:\n    pass\n" if v0_engine else
                     "from vllm.v1.engine.llm_engine import LLMEngine as V1LLMEngine\nLLMEngine = V1LLMEngine\n")
        whl.writestr("vllm/v1/metrics/loggers.py", V1_METRICS)
        whl.writestr("vllm/utils.py", "def f(arg):\n    return arg.startswith('-O')\n")
    return path


@pytest.fixture()
def table(tmp_path):
    wheels = {"0.1.0": _wheel(tmp_path, "0.1.0", "--old-flag", True),
              "0.2.0": _wheel(tmp_path, "0.2.0", "--new-flag", False)}
    return generator.build(wheels)


def test_flags_from_add_argument_dataclass_loop_and_boolean_optional(table):
    base = set(table["BASE_FLAGS"])
    assert {"--block-size", "--dtype", "--tensor-parallel-size", "-tp", "--old-flag", "-O"} <= base
    assert {"--enable-prefix-caching", "--no-enable-prefix-caching"} <= base  # bool field -> BooleanOptionalAction
    assert {"--port", "--disable-fastapi-docs", "--no-disable-fastapi-docs"} <= base  # FrontendArgs loop
    assert table["FLAG_CHANGES"]["0.2.0"] == {"added": ["--new-flag"], "removed": ["--old-flag"]}
    assert table["DEPRECATED_FLAGS"]["0.1.0"] == ["--old-flag"]


def test_choices_from_explicit_list_and_literal_alias(table):
    assert table["FLAG_CHOICES"]["0.1.0"]["--block-size"] == ["8", "16", "32"]
    assert table["FLAG_CHOICES"]["0.1.0"]["--dtype"] == ["auto", "bfloat16", "half"]


def test_metrics_hidden_and_counter_total_and_engine(table):
    assert table["METRICS"]["0.1.0"]["v0"] == {
        "shown": ["vllm:gpu_cache_usage_perc", "vllm:request_success_total"],
        "hidden": ["vllm:gpu_prefix_cache_hit_rate"]}
    assert table["METRICS"]["0.1.0"]["v1"]["shown"] == ["vllm:kv_cache_usage_perc", "vllm:prefix_cache_hits_total"]
    assert table["ENGINES"]["0.1.0"] == {"has_v0": True, "v1_min_compute_capability_major": 8}
    assert table["ENGINES"]["0.2.0"] == {"has_v0": False, "v1_min_compute_capability_major": None}


def test_render_writes_only_the_generated_block(tmp_path, table):
    target = tmp_path / "vllm_versions.py"
    target.write_text(f"HEAD = 1\n{generator.BEGIN}\nOLD = 0\n{generator.END}\nTAIL = 2\n")
    block = generator.render(table)
    text = target.read_text()
    start, end = text.index(generator.BEGIN), text.index(generator.END) + len(generator.END) + 1
    namespace = {}
    exec(text[:start] + block + text[end:], namespace)  # noqa: S102 (the generated module is plain data)
    assert namespace["HEAD"] == 1 and namespace["TAIL"] == 2 and "OLD" not in namespace
    assert namespace["VLLM_RELEASES"] == ["0.1.0", "0.2.0"]
