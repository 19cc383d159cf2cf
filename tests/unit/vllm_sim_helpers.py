"""Serve prompts with the simulated vLLM engine (localcluster.vllm_sim) in-process, without HTTP.

One copy of the engine-driving coroutine for the unit tests of the simulator and of the collection's metric
readers (they used to carry their own copies).
"""
import asyncio

from localcluster import tokens, vllm_flags, vllm_sim

# 64 one-token words: four full 16-token KV blocks, so a second prompt with this prefix hits the prefix cache.
SHARED_PREFIX = " ".join(f"policy{i}" for i in range(64))


def sim_config(argv, version, accelerator, devices=1):
    """The SimConfig a replica of vLLM ``version`` on ``accelerator`` would run with these vLLM args."""
    args = vllm_flags.parse_vllm_args(argv, vllm_version=version)
    return vllm_sim.SimConfig.from_vllm_args(args, accelerator, devices=devices, vllm_version=version,
                                             zero_latency=True)


async def run_requests(engine, prompts, max_output=2):
    """Submit the prompts one after the other to a started engine, each until its last event; the sequences."""
    seqs = []
    for prompt in prompts:
        toks = tokens.tokenize(prompt)
        seq = vllm_sim.Sequence(len(toks), tokens.block_hashes(toks), max_output)
        engine.submit(seq)
        while await seq.events.get() is not None:
            pass
        seqs.append(seq)
    return seqs


def serve(config, prompts, max_output=2):
    """Start an engine with ``config``, serve the prompts, stop it; returns the (stopped) engine."""
    async def scenario():
        engine = vllm_sim.Engine(config)
        engine.start()
        try:
            await run_requests(engine, prompts, max_output)
        finally:
            await engine.stop()
        return engine
    return asyncio.run(scenario())


def exposition(engine):
    """The engine's Prometheus text exposition (what GET /metrics returns)."""
    return engine.metrics.exposition().decode()
