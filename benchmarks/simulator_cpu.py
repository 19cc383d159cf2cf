"""CPU-seconds the vLLM replicas (as the node agent runs them) and the gateway burn, old code vs new code.

Usage: ``.venv/bin/python benchmarks/simulator_cpu.py [--baseline HEAD~1] [--replicas 3] [--idle 30]
[--requests 300] [--concurrency 4] [--repeat 1]``

For each variant (``localcluster/`` and ``plugins/module_utils/`` of ``--baseline``, extracted with
``git archive``, and the working tree) it starts two processes on loopback addresses the shared cluster does
not use (127.3.x.y):

- ``pods``: ``--replicas`` simulated vLLM servers (``localcluster.vllm_sim.VllmServer``) with the node agent's
  container log (``node_agent.ContainerLog``) as their log, and a kubelet-like ``/health`` probe of each every
  1 s (node_agent ``MIN_PROBE_PERIOD_S``) on a new connection per probe;
- ``gateway``: the gateway's data plane (``localcluster.gateway.DataPlane``: health checks, EPP metrics
  refresh, proxy) with one listener whose route sends everything to an InferencePool of those replicas.

Then it drives a fixed workload: ``--idle`` seconds without requests (the state of a cluster with a pattern
deployed between tests), then ``--requests`` completions through the gateway at ``--concurrency``. It prints
each process's CPU-seconds (utime + stime from /proc/<pid>/stat) per phase. No Kubernetes API is involved;
nothing of the shared local cluster is touched.
"""
import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POD_IP = "127.3.0.{}"
GATEWAY_IP = "127.3.1.1"
GATEWAY_PORT = 18990
VLLM_PORT = 8000
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


# ------------------------------------------------------------------------------------------ child roles

async def run_pods(replicas, log_dir):
    import aiohttp

    from localcluster import node_agent, vllm_flags, vllm_sim

    servers = []
    for index in range(replicas):
        version = vllm_flags.versions.VLLM_RELEASES[-1]
        config = vllm_sim.SimConfig(served_model_names=["bench-model"], accelerator="nvidia-tesla-t4",
                                    vllm_version=version)
        log = node_agent.ContainerLog(Path(log_dir) / f"pod{index}.log")
        server = vllm_sim.VllmServer(config, log=log.write)
        await server.start(POD_IP.format(index + 1), VLLM_PORT)
        servers.append(server)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))

    async def probe(index):
        url = f"http://{POD_IP.format(index + 1)}:{VLLM_PORT}/health"
        while True:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                await response.read()
            await asyncio.sleep(1.0)

    tasks = [asyncio.ensure_future(probe(i)) for i in range(replicas)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the driver closes stdin
    for task in tasks:
        task.cancel()
    await session.close()


async def run_gateway(replicas):
    from localcluster import gateway

    plane = gateway.DataPlane(GATEWAY_IP, 0.02)
    await plane.start()
    endpoints = [gateway.Endpoint(f"pod{i}", POD_IP.format(i + 1), VLLM_PORT) for i in range(replicas)]
    health = {**gateway.HEALTH_DEFAULTS, "port": VLLM_PORT, "path": "/health"}
    backend = gateway.Backend("InferencePool", "inference.networking.k8s.io/bench/pool", 1, endpoints, health,
                              30, epp_available=True)
    match = gateway.Match(route="bench/route", rule="0", path_type="PathPrefix", path="/", headers=[], rewrite=None,
                          backends=[backend])
    plane.set_snapshot(gateway.Snapshot(ports={GATEWAY_PORT}, matches={GATEWAY_PORT: [match]}))
    await plane._bind({GATEWAY_PORT})
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await plane.session.close()


# ------------------------------------------------------------------------------------------ driver

def start(role, root, replicas, log_dir):
    env = {**os.environ, "PYTHONPATH": str(root)}
    process = subprocess.Popen([sys.executable, __file__, "--role", role, "--replicas", str(replicas),
                                "--log-dir", log_dir], cwd=root, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise SystemExit(f"{role} of {root} did not start (printed {line!r})")
    return process


async def drive(requests, concurrency):
    import aiohttp

    url = f"http://{GATEWAY_IP}:{GATEWAY_PORT}/v1/completions"
    statuses = {}
    async with aiohttp.ClientSession() as session:
        queue = asyncio.Queue()
        for index in range(requests):
            queue.put_nowait(index)

        async def worker():
            while not queue.empty():
                index = queue.get_nowait()
                body = {"model": "bench-model", "prompt": f"shared system prompt {index % 8} " * 20 + f"q{index}",
                        "max_tokens": 8}
                async with session.post(url, json=body) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def wait_routable(timeout=60):
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://{GATEWAY_IP}:{GATEWAY_PORT}/v1/models") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the gateway did not route to the replicas within 60 s")


def measure(root, args):
    with tempfile.TemporaryDirectory(prefix="simcpu-") as log_dir:
        pods = start("pods", root, args.replicas, log_dir)
        gw = start("gateway", root, args.replicas, log_dir)
        try:
            asyncio.run(wait_routable())
            before = {name: cpu_seconds(p.pid) for name, p in (("pods", pods), ("gateway", gw))}
            time.sleep(args.idle)
            idle = {name: cpu_seconds(p.pid) for name, p in (("pods", pods), ("gateway", gw))}
            started = time.monotonic()
            statuses = asyncio.run(drive(args.requests, args.concurrency))
            busy_wall = time.monotonic() - started
            busy = {name: cpu_seconds(p.pid) for name, p in (("pods", pods), ("gateway", gw))}
        finally:
            for process in (pods, gw):
                process.stdin.close()  # the child's cue to stop (and write its profile)
            for process in (pods, gw):
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=15)
    return {"idle": {k: round(idle[k] - before[k], 2) for k in idle},
            "busy": {k: round(busy[k] - idle[k], 2) for k in busy},
            "busy_wall_s": round(busy_wall, 2), "statuses": statuses}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--role", choices=("pods", "gateway"))
    parser.add_argument("--log-dir")
    parser.add_argument("--baseline", default="HEAD", help="git revision whose localcluster/ is the baseline")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds without requests")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="alternate baseline/current this many times")
    args = parser.parse_args()
    if args.role:
        role = run_pods(args.replicas, args.log_dir) if args.role == "pods" else run_gateway(args.replicas)
        profile_dir = os.environ.get("SIMCPU_PROFILE")  # a folder: each child writes <role>-<pid>.prof (cProfile)
        if not profile_dir:
            asyncio.run(role)
            return
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(role)
        finally:
            profiler.disable()
            profiler.dump_stats(os.path.join(profile_dir, f"{args.role}-{os.getpid()}.prof"))
        return
    with tempfile.TemporaryDirectory(prefix="simcpu-baseline-") as baseline:
        archive = subprocess.run(["git", "archive", args.baseline, "localcluster", "plugins/module_utils"],
                                 cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", baseline], input=archive, check=True)
        results = []
        for _ in range(args.repeat):
            for label, root in ((f"baseline {args.baseline}", Path(baseline)), ("working tree", REPO)):
                result = measure(root, args)
                results.append((label, result))
                print(f"{label:24} {json.dumps(result)}", flush=True)
    print(f"\nCPU-s per phase ({args.replicas} replicas, {args.idle:.0f} s idle, {args.requests} requests at "
          f"concurrency {args.concurrency}):")
    for label in dict(results):
        runs = [r for name, r in results if name == label]
        for phase in ("idle", "busy"):
            for proc in ("pods", "gateway"):
                mean = sum(r[phase][proc] for r in runs) / len(runs)
                print(f"  {label:24} {phase:5} {proc:8} {mean:7.2f}")


if __name__ == "__main__":
    main()
