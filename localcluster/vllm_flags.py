"""The command line the simulated vLLM accepts, and how a container's command resolves to it.

The flag list follows vLLM's OpenAI API server as shipped in the images the collection uses
(vLLM 0.8-0.11: RHAIIS 3.0-3.2, llm-d 0.x). It is parsed with a real ``argparse`` parser, so a flag vLLM
does not have fails exactly as vLLM fails: usage on stderr, ``<prog>: error: unrecognized arguments:
...``, exit code 2 (``--prefix-cache-block-size=16`` in the seed's GPU manifest is such a flag).
"""
import argparse
import re
import shlex

ARGPARSE_EXIT_CODE = 2
API_SERVER_PROG = "api_server.py"  # argparse's prog for `python3 -m vllm.entrypoints.openai.api_server`
SERVE_PROG = "vllm serve"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"

DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
LOAD_FORMATS = ("auto", "pt", "safetensors", "npcache", "dummy", "tensorizer", "sharded_state", "gguf",
                "bitsandbytes", "mistral", "runai_streamer", "fastsafetensors")
QUANTIZATIONS = ("aqlm", "awq", "deepspeedfp", "tpu_int8", "fp8", "fbgemm_fp8", "modelopt", "marlin", "gguf",
                 "gptq_marlin_24", "gptq_marlin", "awq_marlin", "gptq", "compressed-tensors", "bitsandbytes",
                 "qqq", "hqq", "experts_int8", "neuron_quant", "ipex", "quark", "moe_wna16", "torchao")
BLOCK_SIZES = (1, 8, 16, 32, 64, 128)

# (flag, type, extra argparse keywords). Booleans use BooleanOptionalAction where vLLM does.
_VALUED_FLAGS = (
    ("--host", str, {}), ("--port", int, {"default": 8000}), ("--uvicorn-log-level", str, {}),
    ("--root-path", str, {}), ("--api-key", str, {}), ("--ssl-keyfile", str, {}), ("--ssl-certfile", str, {}),
    ("--ssl-ca-certs", str, {}), ("--ssl-cert-reqs", int, {}), ("--allowed-origins", str, {}),
    ("--allowed-methods", str, {}), ("--allowed-headers", str, {}), ("--lora-modules", str, {"nargs": "+"}),
    ("--prompt-adapters", str, {"nargs": "+"}), ("--chat-template", str, {}),
    ("--chat-template-content-format", str, {"choices": ("auto", "string", "openai")}),
    ("--response-role", str, {}), ("--middleware", str, {"action": "append"}),
    ("--tool-call-parser", str, {}), ("--tool-parser-plugin", str, {}), ("--reasoning-parser", str, {}),
    ("--max-log-len", int, {}), ("--shutdown-timeout", int, {}),
    ("--disable-access-log-for-endpoints", str, {}),
    ("--model", str, {}), ("--task", str, {}), ("--tokenizer", str, {}), ("--hf-config-path", str, {}),
    ("--revision", str, {}), ("--code-revision", str, {}), ("--tokenizer-revision", str, {}),
    ("--tokenizer-mode", str, {"choices": ("auto", "slow", "mistral", "custom")}),
    ("--download-dir", str, {}), ("--load-format", str, {"choices": LOAD_FORMATS}),
    ("--config-format", str, {"choices": ("auto", "hf", "mistral")}),
    ("--dtype", str, {"choices": DTYPES, "default": "auto"}),
    ("--kv-cache-dtype", str, {"choices": KV_CACHE_DTYPES}), ("--max-model-len", int, {}),
    ("--guided-decoding-backend", str, {}), ("--distributed-executor-backend", str,
                                             {"choices": ("ray", "mp", "uni", "external_launcher")}),
    ("--pipeline-parallel-size", int, {"default": 1}), ("--tensor-parallel-size", int, {"default": 1}),
    ("--data-parallel-size", int, {"default": 1}), ("--max-parallel-loading-workers", int, {}),
    ("--block-size", int, {"choices": BLOCK_SIZES}), ("--prefix-caching-hash-algo", str,
                                                      {"choices": ("builtin", "sha256", "sha256_cbor_64bit")}),
    ("--swap-space", float, {}), ("--cpu-offload-gb", float, {}),
    ("--gpu-memory-utilization", float, {"default": 0.9}), ("--num-gpu-blocks-override", int, {}),
    ("--max-num-batched-tokens", int, {}), ("--max-num-partial-prefills", int, {}),
    ("--max-long-partial-prefills", int, {}), ("--long-prefill-token-threshold", int, {}),
    ("--max-num-seqs", int, {}), ("--max-logprobs", int, {}), ("--rope-scaling", str, {}),
    ("--rope-theta", float, {}), ("--hf-overrides", str, {}), ("--max-seq-len-to-capture", int, {}),
    ("--tokenizer-pool-size", int, {}), ("--limit-mm-per-prompt", str, {}), ("--mm-processor-kwargs", str, {}),
    ("--max-lora-rank", int, {}), ("--max-loras", int, {}), ("--lora-dtype", str, {}),
    ("--max-cpu-loras", int, {}), ("--device", str, {"choices": ("auto", "cuda", "neuron", "cpu", "tpu", "xpu",
                                                                 "hpu")}),
    ("--num-scheduler-steps", int, {}), ("--speculative-config", str, {}), ("--model-loader-extra-config", str, {}),
    ("--preemption-mode", str, {}), ("--served-model-name", str, {"nargs": "+"}), ("--qlora-adapter-name-or-path",
                                                                                   str, {}),
    ("--otlp-traces-endpoint", str, {}), ("--collect-detailed-traces", str, {}),
    ("--scheduling-policy", str, {"choices": ("fcfs", "priority")}), ("--scheduler-cls", str, {}),
    ("--override-neuron-config", str, {}), ("--override-pooler-config", str, {}),
    ("--compilation-config", str, {}), ("-O", str, {}), ("--kv-transfer-config", str, {}),
    ("--kv-events-config", str, {}), ("--worker-cls", str, {}), ("--worker-extension-cls", str, {}),
    ("--generation-config", str, {}), ("--override-generation-config", str, {}), ("--additional-config", str, {}),
    ("--quantization", str, {"choices": QUANTIZATIONS}), ("-q", str, {"dest": "quantization_short"}),
    ("--seed", int, {}), ("--allowed-local-media-path", str, {}), ("--logits-processor-pattern", str, {}),
    ("--model-impl", str, {"choices": ("auto", "vllm", "transformers")}),
    ("--tool-server", str, {}), ("--api-server-count", int, {}), ("--data-parallel-address", str, {}),
    ("--data-parallel-rpc-port", int, {}), ("--data-parallel-size-local", int, {}),
    ("--long-prefill-threshold", int, {}), ("--cuda-graph-sizes", int, {"nargs": "+"}),
)
_STORE_TRUE_FLAGS = (
    "--disable-uvicorn-access-log", "--disable-frontend-multiprocessing", "--enable-request-id-headers",
    "--enable-auto-tool-choice", "--disable-fastapi-docs", "--enable-prompt-tokens-details",
    "--enable-server-load-tracking", "--enable-ssl-refresh", "--return-tokens-as-token-ids",
    "--enable-force-include-usage", "--disable-log-requests", "--disable-log-stats", "--enable-log-requests",
    "--skip-tokenizer-init", "--trust-remote-code", "--disable-sliding-window", "--disable-cascade-attn",
    "--use-v2-block-manager", "--ray-workers-use-nsight", "--enforce-eager", "--disable-custom-all-reduce",
    "--enable-lora", "--enable-lora-bias", "--fully-sharded-loras", "--enable-prompt-adapter",
    "--disable-async-output-proc", "--enable-sleep-mode", "--calculate-kv-scales", "--enable-expert-parallel",
    "--disable-mm-preprocessor-cache", "--enable-prompt-embeds", "--headless", "--show-hidden-metrics-for-version",
)
_BOOLEAN_OPTIONAL_FLAGS = ("--enable-prefix-caching", "--enable-chunked-prefill", "--enable-reasoning")


class VllmArgumentError(Exception):
    """What vLLM prints and its exit code when the command line does not parse."""

    def __init__(self, output, exit_code=ARGPARSE_EXIT_CODE):
        super().__init__(output)
        self.output = output
        self.exit_code = exit_code


class _RaisingParser(argparse.ArgumentParser):
    """argparse prints and exits; a container needs the text and the code instead."""

    def error(self, message):
        raise VllmArgumentError(f"{self.format_usage()}{self.prog}: error: {message}\n")

    def exit(self, status=0, message=None):
        raise VllmArgumentError(message or "", exit_code=status)

    def print_help(self, file=None):
        raise VllmArgumentError(self.format_help(), exit_code=0)


def build_parser(prog=API_SERVER_PROG):
    """A parser with vLLM's flags; ``vllm serve`` also takes the model as a positional argument."""
    parser = _RaisingParser(prog=prog, usage="%(prog)s [model_tag] [options]" if prog == SERVE_PROG else None,
                            description="vLLM OpenAI-Compatible RESTful API server.", allow_abbrev=False)
    if prog == SERVE_PROG:
        parser.add_argument("model_tag", nargs="?", help="The model tag to serve")
    for flag, kind, extra in _VALUED_FLAGS:
        parser.add_argument(flag, type=kind, **extra)
    for flag in _STORE_TRUE_FLAGS:
        parser.add_argument(flag, action="store_true")
    for flag in _BOOLEAN_OPTIONAL_FLAGS:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
    return parser


def _normalize_underscores(argv):
    """vLLM's FlexibleArgumentParser accepts ``--max_model_len`` for ``--max-model-len``."""
    out = []
    for arg in argv:
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            arg = name.replace("_", "-") + sep + value
        out.append(arg)
    return out


def parse_vllm_args(argv, prog=API_SERVER_PROG):
    """Parse vLLM arguments; raises VllmArgumentError with vLLM's own output on a bad command line."""
    args = build_parser(prog).parse_args(_normalize_underscores(list(argv)))
    args.model = getattr(args, "model_tag", None) or args.model or "facebook/opt-125m"
    args.max_num_seqs = args.max_num_seqs or 256
    args.block_size = args.block_size or 16
    # vLLM V1 (0.8+) turns prefix caching on by default; --no-enable-prefix-caching turns it off.
    args.enable_prefix_caching = True if args.enable_prefix_caching is None else args.enable_prefix_caching
    return args


# --- resolving a container's command to a vLLM invocation -------------------------------------------

_ASSIGNMENT_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_VLLM_LINE_RE = re.compile(r"\bvllm\s+serve\b|" + re.escape(API_SERVER_MODULE))


def _script_assignments(lines, env):
    """First value of each plain ``NAME=value`` line: the branch a stock vLLM image takes in KServe's template."""
    values = dict(env)
    for line in lines:
        match = _ASSIGNMENT_RE.match(line)
        if match and match.group(1) not in values and "$(" not in match.group(2):
            try:
                values[match.group(1)] = " ".join(shlex.split(match.group(2)))
            except ValueError:  # unbalanced quotes: not a plain assignment
                continue
    return values


def _expand(text, values, positional, quote_positional=True):
    """Expand ``$@``/``$*``/``${VAR:-default}``/``$VAR`` as bash would before word splitting."""
    joined = " ".join(shlex.quote(p) if quote_positional else p for p in positional)
    text = text.replace('"$@"', joined).replace("$@", joined).replace("$*", joined)
    return _VAR_RE.sub(lambda m: values.get(m.group(1) or m.group(3)) or (m.group(2) or ""), text)


def _vllm_command_in_script(script, env, positional):
    """The words of the script's (last) vLLM command after shell expansion, or None."""
    joined = re.sub(r"\\\n", " ", script)
    lines = [line for line in joined.splitlines() if not line.lstrip().startswith("#")]
    candidates = [line for line in lines if _VLLM_LINE_RE.search(line)]
    if not candidates:
        return None
    line = candidates[-1].strip()
    values = _script_assignments(lines, env)
    is_eval = line.startswith("eval ")
    try:
        if is_eval:  # eval: "$@" inside the quoted string is joined, then the whole is split again
            line = " ".join(shlex.split(line[len("eval "):]))
            positional = [re.sub(r"\\\n", " ", p) for p in positional]
        return shlex.split(_expand(line, values, positional, quote_positional=not is_eval))
    except ValueError:
        return None


def _find_invocation(words):
    """(prog, args) for the first ``vllm serve`` / ``python -m vllm.entrypoints.openai.api_server`` in words."""
    for i, word in enumerate(words):
        base = word.rsplit("/", 1)[-1]
        if base == "vllm" and i + 1 < len(words) and words[i + 1] == "serve":
            return SERVE_PROG, words[i + 2:]
        if base.startswith("python") and words[i + 1:i + 3] == ["-m", API_SERVER_MODULE]:
            return API_SERVER_PROG, words[i + 3:]
    return None


def resolve_vllm_command(command, args, env=None, image_entrypoint=("python3", "-m", API_SERVER_MODULE)):
    """Turn a container's command/args into (prog, vllm_args), or None when it does not start vLLM.

    Handles what appears in pod specs: KServe's ``/bin/bash -c <script> -- args...`` template, the seed's
    ``/bin/bash -c`` with one string argument, direct ``vllm serve ...`` / ``python3 -m ...`` commands,
    and plain args with the image's entrypoint (the vLLM OpenAI server).
    """
    command, args, env = list(command or []), list(args or []), dict(env or {})
    argv = (command or list(image_entrypoint)) + args
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in ("bash", "sh") and argv[1] == "-c":
        words = _vllm_command_in_script(argv[2], env, argv[4:])  # argv[3] is $0 ("--" in KServe's template)
        return _find_invocation(words) if words else None
    return _find_invocation(argv)
