"""CPU savings of the simulators must not change what clients see: cached /metrics, the EPP's paused refresh."""
import asyncio

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from localcluster import epp, gateway, vllm_sim
from tests.unit.vllm_sim_helpers import run_requests


def _config(version="0.11.0"):
    return vllm_sim.SimConfig(served_model_names=["m"], accelerator="nvidia-tesla-t4", vllm_version=version,
                              zero_latency=True)


def test_metrics_exposition_is_rendered_again_only_after_a_change(monkeypatch):
    renders = []
    render = vllm_sim._Family.render

    def counting(family):
        renders.append(family)
        return render(family)

    monkeypatch.setattr(vllm_sim._Family, "render", counting)

    async def scenario():
        engine = vllm_sim.Engine(_config())
        engine.start()
        try:
            first = engine.metrics.exposition()
            assert first == generate_latest(engine.metrics.registry)
            families = len(renders)
            assert families > 10  # one render per metric family
            assert engine.metrics.exposition() is first  # unchanged: the same bytes, nothing rendered again
            assert len(renders) == families
            engine.metrics.generation_tokens.inc()
            one_more = engine.metrics.exposition()
            assert len(renders) == families + 1  # only the family that changed
            assert one_more == generate_latest(engine.metrics.registry) != first
            await run_requests(engine, ["hello there " * 20])
            after = engine.metrics.exposition()
            assert after == generate_latest(engine.metrics.registry)  # exactly what a fresh render gives
            generated = [s.value for f in text_string_to_metric_families(after.decode()) for s in f.samples
                         if s.name == "vllm:generation_tokens_total"]
            assert generated == [3.0]  # the increment above + run_requests' two output tokens
        finally:
            await engine.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("version", ["0.8.4", "0.11.0"])  # V0 and V1 metric sets on a T4
def test_every_metric_update_invalidates_the_cached_exposition(version):
    metrics = vllm_sim.Engine(_config(version)).metrics
    for update in (lambda: metrics.waiting.set(3), lambda: metrics.generation_tokens.inc(),
                   lambda: metrics.ttft.observe(0.2),
                   lambda: metrics.request_success.labels(finished_reason="stop", **metrics.labels).inc(),
                   lambda: metrics.observe_prefix(32, 16), lambda: metrics.prefix_hit_rate.set(0.5)):
        metrics.exposition()
        update()  # (metrics this release does not expose change nothing)
        assert metrics.exposition() == generate_latest(metrics.registry)


class _Snapshot:
    def metrics_targets(self):
        return {("127.9.9.9", 8000)}


def test_epp_refresh_pauses_when_idle_and_a_request_gets_a_fresh_round(monkeypatch):
    scraped = []

    async def fake_scrape(_session, ip, port, _timeout):
        scraped.append((ip, port))
        return {epp.WAITING_METRIC: float(len(scraped))}

    monkeypatch.setattr(gateway.MetricsScraper, "_scrape", staticmethod(fake_scrape))

    async def scenario():
        scraper = gateway.MetricsScraper(interval=0.01, idle_after=0.1, resume_wait=1.0)
        task = asyncio.ensure_future(scraper.run(_Snapshot, None))
        try:
            await asyncio.sleep(0.4)
            assert scraper.paused, "no request for idle_after seconds: the refresh stops"
            rounds = scraper.rounds
            assert rounds >= 3  # it did refresh every interval while in use
            await asyncio.sleep(0.2)
            assert scraper.rounds == rounds  # nothing scraped while idle
            await scraper.fresh()  # a request arrives: one new round before it is picked
            assert scraper.rounds == rounds + 1
            assert scraper.values["127.9.9.9:8000"] == {epp.WAITING_METRIC: float(len(scraped))}
            assert not scraper.paused
            await asyncio.sleep(0.05)
            assert scraper.rounds > rounds + 1  # and it keeps refreshing every interval while requests come
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_epp_request_does_not_wait_long_for_a_hung_scrape(monkeypatch):
    async def hung_scrape(_session, ip, port, _timeout):
        await asyncio.sleep(30)

    monkeypatch.setattr(gateway.MetricsScraper, "_scrape", staticmethod(hung_scrape))

    async def scenario():
        scraper = gateway.MetricsScraper(interval=0.01, idle_after=0.0, resume_wait=0.05)
        scraper.last_used -= 1
        task = asyncio.ensure_future(scraper.run(_Snapshot, None))
        try:
            await asyncio.sleep(0.02)
            assert scraper.paused
            started = asyncio.get_running_loop().time()
            await scraper.fresh()
            assert asyncio.get_running_loop().time() - started < 0.5  # bounded by resume_wait, not the scrape
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_parse_metrics_skips_other_samples_and_names_that_only_share_a_prefix():
    text = ("# HELP vllm:num_requests_waiting Number of requests waiting.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0\n'
            'vllm:num_requests_waiting_extra{model_name="m"} 7.0\n'
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5\n'
            'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.25\n'
            "vllm:generation_tokens_total 9.0\n")
    assert epp.parse_metrics(text) == {epp.WAITING_METRIC: 2.0, epp.KV_USAGE_METRIC: 0.75}


def _pod(ready=True, ip="127.1.0.7", labels=None, restarts=0, deleting=False, uid="u1"):
    meta = {"namespace": "ns", "name": "p", "uid": uid, "labels": labels or {"app": "vllm"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": [{"name": "main"}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"},
                                                   {"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": "main", "restartCount": restarts}]}}


def test_gateway_syncs_on_pod_updates_only_when_routing_would_change():
    controller = gateway.GatewayController(None, "127.0.0.1", lambda _snapshot: None)

    def dirty_after(kind, pod):
        controller.dirty.clear()
        controller._pod_changed(kind, pod)
        return controller.dirty.is_set()

    assert dirty_after("ADDED", _pod())
    assert not dirty_after("MODIFIED", _pod(restarts=3))  # container status churn: no routing change
    assert dirty_after("MODIFIED", _pod(ready=False))
    assert dirty_after("MODIFIED", _pod(ready=False, ip="127.1.0.8"))
    assert dirty_after("MODIFIED", _pod(ready=False, ip="127.1.0.8", labels={"app": "other"}))
    assert dirty_after("MODIFIED", _pod(ready=False, ip="127.1.0.8", labels={"app": "other"}, deleting=True))
    assert dirty_after("DELETED", _pod())
    assert dirty_after("ADDED", _pod(uid="u2"))  # recreated under the same name
    assert not dirty_after("MODIFIED", _pod(uid="u2"))
