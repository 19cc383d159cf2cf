# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filter ``vllm_args_check``: refuse vLLM command-line flags that vLLM does not have.

vLLM exits with ``unrecognized arguments`` on an unknown flag, which on a cluster shows up only as a
crash-looping pod minutes after the deployment. Checking the flags against the known set before
anything is applied turns that into an immediate error that names the flag and the right one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

import difflib
import shlex

from ansible.errors import AnsibleFilterError

# `vllm serve` / `python -m vllm.entrypoints.openai.api_server` flags, vLLM 0.8 - 0.11
# (the range the Red Hat AI Inference Server 3.x images ship). Extend with `extra_flags`.
KNOWN_VLLM_FLAGS = frozenset("""
--additional-config --allow-credentials --allowed-headers --allowed-local-media-path --allowed-media-domains
--allowed-methods --allowed-origins --api-key --api-server-count --async-scheduling --attention-backend
--block-size --calculate-kv-scales --chat-template --chat-template-content-format --code-revision
--collect-detailed-traces --compilation-config --config --config-format --convert --cpu-offload-gb
--cuda-graph-sizes --data-parallel-address --data-parallel-backend --data-parallel-hybrid-lb
--data-parallel-rank --data-parallel-rpc-port --data-parallel-size --data-parallel-size-local
--data-parallel-start-rank --dbo-decode-token-threshold --dbo-prefill-token-threshold --default-mm-loras
--device --disable-access-log-for-endpoints --disable-async-output-proc --disable-cascade-attn
--disable-chunked-mm-input --disable-custom-all-reduce --disable-fastapi-docs
--disable-frontend-multiprocessing --disable-log-requests --disable-log-stats --disable-mm-preprocessor-cache
--disable-sliding-window --disable-uvicorn-access-log --distributed-executor-backend --download-dir --dtype
--enable-auto-tool-choice --enable-chunked-prefill --enable-dbo --enable-eplb --enable-expert-parallel
--enable-force-include-usage --enable-log-outputs --enable-log-requests --enable-lora --enable-lora-bias
--enable-multimodal-encoder-data-parallel --enable-prefix-caching --enable-prompt-adapter
--enable-prompt-embeds --enable-prompt-tokens-details --enable-reasoning --enable-request-id-headers
--enable-server-load-tracking --enable-sleep-mode --enable-ssl-refresh --enable-tokenizer-info-endpoint
--enforce-eager --eplb-config --exclude-tools-when-tool-choice-none --expand-tools-even-if-tool-choice-none
--fully-sharded-loras --generation-config --gpu-memory-utilization --guided-decoding-backend
--guided-decoding-disable-additional-properties --guided-decoding-disable-any-whitespace
--guided-decoding-disable-fallback --h11-max-header-count --h11-max-incomplete-event-size --headless
--hf-config-path --hf-overrides --hf-token --host --ignore-patterns --interleave-mm-strings --kv-cache-dtype
--kv-cache-memory --kv-events-config --kv-transfer-config --limit-mm-per-prompt --load-format
--log-config-file --log-error-stack --logits-processor-pattern --logits-processors --logprobs-mode
--long-lora-scaling-factors --long-prefill-token-threshold --lora-dtype --lora-extra-vocab-size --lora-modules
--mamba-cache-dtype --mamba-ssm-cache-dtype --max-cpu-loras --max-cudagraph-capture-size --max-log-len
--max-logprobs --max-long-partial-prefills --max-lora-rank --max-loras --max-model-len
--max-num-batched-tokens --max-num-partial-prefills --max-num-seqs --max-parallel-loading-workers
--max-prompt-adapter-token --max-prompt-adapters --max-seq-len-to-capture --media-io-kwargs --middleware
--mm-encoder-tp-mode --mm-processor-cache-gb --mm-processor-kwargs --model --model-impl
--model-loader-extra-config --multi-step-stream-outputs --no-enable-chunked-prefill --no-enable-prefix-caching
--num-gpu-blocks-override --num-lookahead-slots --num-redundant-experts --num-scheduler-steps
--num-speculative-tokens --otlp-traces-endpoint --override-attention-dtype --override-generation-config
--override-neuron-config --override-pooler-config --pipeline-parallel-size --pooler-config --port
--preemption-mode --prefix-caching-hash-algo --prompt-adapters --pt-load-map-location
--qlora-adapter-name-or-path --quantization --ray-workers-use-nsight --reasoning-parser --response-role
--return-tokens-as-token-ids --revision --root-path --rope-scaling --rope-theta --runner
--safetensors-load-strategy --scheduler-cls --scheduler-delay-factor --scheduling-policy --seed
--served-model-name --show-hidden-metrics-for-version --shutdown-timeout --skip-mm-profiling
--skip-tokenizer-init --speculative-config --speculative-model --ssl-ca-certs --ssl-cert-reqs --ssl-certfile
--ssl-keyfile --structured-outputs-config --swap-space --task --tensor-parallel-size --tokenizer
--tokenizer-mode --tokenizer-pool-extra-config --tokenizer-pool-size --tokenizer-pool-type
--tokenizer-revision --tool-call-parser --tool-parser-plugin --tool-server --trust-remote-code
--use-tqdm-on-load --use-v2-block-manager --uvicorn-log-level --worker-cls --worker-extension-cls -O -dp -pp
-q -tp
""".split())  # noqa: SIM905 (a readable block of flags)

# Flags people write from memory or copy from other servers, with the vLLM flag they mean.
KNOWN_MISTAKES = {
    "--prefix-cache-block-size": "--block-size",
    "--prefix-caching-block-size": "--block-size",
    "--enable-prefix-cache": "--enable-prefix-caching",
    "--served-model": "--served-model-name",
    "--model-name": "--served-model-name",
    "--tp": "--tensor-parallel-size",
    "--tensor-parallel": "--tensor-parallel-size",
    "--tp-size": "--tensor-parallel-size",
    "--max-model-length": "--max-model-len",
    "--max-seq-len": "--max-model-len",
    "--max-batch-size": "--max-num-seqs",
    "--gpu-memory-util": "--gpu-memory-utilization",
    "--gpu-mem-util": "--gpu-memory-utilization",
    "--disable-log-request": "--disable-log-requests",
}


def _tokens(args):
    """Flags as a list; a shell command string (the seed's `args`) is split and its program part dropped."""
    if isinstance(args, str):
        tokens = shlex.split(args.replace("\\\n", " "))
        first_flag = next((i for i, tok in enumerate(tokens) if tok.startswith("--")), len(tokens))
        return tokens[first_flag:]
    if isinstance(args, (list, tuple)):
        bad = [a for a in args if not isinstance(a, str)]
        if bad:
            raise AnsibleFilterError(f"vLLM args must be strings, got {bad[0]!r}")
        return list(args)
    raise AnsibleFilterError(f"vLLM args must be a list of strings or a command string, got {type(args).__name__}")


def _flag_name(token):
    name = token.split("=", 1)[0]
    # vLLM's parser accepts --max_model_len for --max-model-len.
    return name[:2] + name[2:].replace("_", "-") if name.startswith("--") else name


def _suggestion(flag, known):
    if flag in KNOWN_MISTAKES:
        return KNOWN_MISTAKES[flag]
    close = difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.75)
    return close[0] if close else None


def vllm_args_check(args, source="vllm_args", extra_flags=None, reserved=None):
    """Return the vLLM flags unchanged (as a list) or fail naming the first flag vLLM would refuse."""
    known = KNOWN_VLLM_FLAGS | frozenset(extra_flags or ())
    reserved = dict(reserved or {})
    seen = {}
    previous_was_flag = False
    for token in _tokens(args):
        if not token.startswith("-"):
            if not previous_was_flag:
                raise AnsibleFilterError(
                    f"{source}: '{token}' is not a vLLM flag (write --flag or --flag=value)")
            previous_was_flag = False  # a value for the flag before it
            continue
        flag = _flag_name(token)
        if flag in reserved:
            raise AnsibleFilterError(f"{source}: {flag} is set by the llmisvc role ({reserved[flag]}); remove it")
        if flag not in known:
            hint = _suggestion(flag, known)
            raise AnsibleFilterError(
                f"{source}: vLLM does not accept {flag} (the server would exit with 'unrecognized arguments')"
                + (f"; use {hint} instead" if hint else ""))
        if flag in seen:
            raise AnsibleFilterError(f"{source}: {flag} is given twice ({seen[flag]} and {token})")
        seen[flag] = token
        previous_was_flag = "=" not in token
    return list(_tokens(args))


class FilterModule:
    def filters(self):
        return {"vllm_args_check": vllm_args_check}
