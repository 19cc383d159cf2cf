"""Endpoint picker of the simulated GKE gateway: the EPP configuration KServe v0.20 injects (pure logic, no I/O).

For ``router.scheduler: {}`` without an inline config, KServe v0.20 writes this EndpointPickerConfig into the
scheduler Deployment (kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/scheduler.go, schedulerConfigText,
single-profile default): one profile ``default`` with

- ``queue-scorer`` weight 2: (max - waiting) / (max - min) over the candidates' ``vllm:num_requests_waiting``,
  1.0 for all when equal (gateway-api-inference-extension pkg/epp/scheduling/framework/plugins/scorer/queue.go);
- ``kv-cache-utilization-scorer`` weight 2: 1 - ``vllm:kv_cache_usage_perc`` (same directory,
  kvcache_utilization.go; the metric names are the model server protocol's, gateway-api-inference-extension
  docs/proposals/003-model-server-protocol/README.md);
- ``prefix-cache-scorer`` weight 3: the fraction of the prompt's blocks the endpoint is believed to hold
  (gateway-api-inference-extension pkg/epp/scheduling/framework/plugins/multi/prefix); the index is
  approximate like the real one: it records the blocks of every prompt routed to an endpoint and forgets the
  least recently used ones beyond a capacity;
- ``no-hit-lru-scorer`` weight 2: for a cold request (no candidate holds any block), endpoints never used for a
  cold request score highest, then the least recently used ones; 0.5 for every endpoint when some endpoint has
  a hit (llm-d/llm-d-inference-scheduler pkg/plugins/scorer/no_hit_lru.go);
- ``max-score-picker``: the highest weighted sum; ties are broken by rotation here (the real picker picks one
  of the tied endpoints at random).

The queue and KV-cache scorers read the metrics the gateway scrapes from each endpoint's ``/metrics``; an
endpoint without metrics yet counts as 0 waiting and 0 usage (the EPP's zero-valued metrics before its first
scrape).
"""
import collections
import itertools

import yaml

from localcluster.tokens import block_hashes, tokenize

# kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/scheduler.go, schedulerConfigText (default profile).
KSERVE_DEFAULT_WEIGHTS = {"queue-scorer": 2.0, "kv-cache-utilization-scorer": 2.0, "prefix-cache-scorer": 3.0,
                          "no-hit-lru-scorer": 2.0}
DEFAULT_BLOCKS_PER_ENDPOINT = 31250
# Metric names the scorers read (gateway-api-inference-extension docs/proposals/003-model-server-protocol).
WAITING_METRIC = "vllm:num_requests_waiting"
KV_USAGE_METRIC = "vllm:kv_cache_usage_perc"


def prompt_text(path, body):
    """The text an OpenAI request's prefix cache is keyed on (completion prompt or chat messages)."""
    if not isinstance(body, dict):
        return ""
    if "messages" in body and isinstance(body["messages"], list):
        parts = []
        for message in body["messages"]:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(f"{message.get('role', '')}: {content or ''}")
        return "\n".join(parts)
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    return str(prompt or "")


class PrefixIndex:
    """Approximate per-endpoint set of cached block hashes, LRU-bounded per endpoint."""

    def __init__(self, capacity=DEFAULT_BLOCKS_PER_ENDPOINT):
        self.capacity = capacity
        self.blocks = collections.defaultdict(collections.OrderedDict)

    def matched_blocks(self, endpoint, hashes):
        """Number of leading blocks of ``hashes`` the endpoint is believed to have cached."""
        cached = self.blocks.get(endpoint)
        if not cached:
            return 0
        count = 0
        for block in hashes:
            if block not in cached:
                break
            count += 1
        return count

    def record(self, endpoint, hashes):
        cached = self.blocks[endpoint]
        for block in hashes:
            cached[block] = True
            cached.move_to_end(block)
        while len(cached) > self.capacity:
            cached.popitem(last=False)

    def forget_missing(self, endpoints):
        for endpoint in list(self.blocks):
            if endpoint not in endpoints:
                del self.blocks[endpoint]


class NoHitLRU:
    """llm-d's no-hit-lru-scorer: spreads cold requests (no prefix hit anywhere) over the endpoints.

    llm-d/llm-d-inference-scheduler pkg/plugins/scorer/no_hit_lru.go: LRU of endpoints by their last cold
    request (oldest first); never-used endpoints score 1 - i/(n-1) in candidate order, used ones
    1 - (never_used + lru_position)/(n-1) (at least 0); a single candidate scores 1.0; hits score 0.5.
    """

    def __init__(self, size=1024):
        self.size = size
        self.lru = collections.OrderedDict()  # endpoint -> None, oldest first

    def scores(self, endpoints, cold):
        if not cold:
            return dict.fromkeys(endpoints, 0.5)
        total = len(endpoints)
        if total == 1:
            return {endpoints[0]: 1.0}
        position = {e: i for i, e in enumerate(self.lru)}
        never = [e for e in endpoints if e not in position]
        result = {e: 1.0 - i / (total - 1) for i, e in enumerate(never)}
        for endpoint in endpoints:
            if endpoint in position:
                result[endpoint] = max(0.0, 1.0 - (len(never) + position[endpoint]) / (total - 1))
        return result

    def used_for_cold(self, endpoint):
        self.lru.pop(endpoint, None)
        self.lru[endpoint] = None
        while len(self.lru) > self.size:
            self.lru.popitem(last=False)


class PrefixAwarePicker:
    """Scores endpoints with KServe v0.20's default EPP profile and records the choice (see module docstring)."""

    def __init__(self, capacity=DEFAULT_BLOCKS_PER_ENDPOINT, weights=None):
        self.index = PrefixIndex(capacity)
        self.weights = dict(KSERVE_DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(self.weights) - set(KSERVE_DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown scorer(s) {', '.join(sorted(unknown))}: the simulated EPP implements "
                             f"{', '.join(KSERVE_DEFAULT_WEIGHTS)}")
        self.no_hit_lru = NoHitLRU()
        self._tiebreak = itertools.count()

    def scorer_scores(self, endpoints, hashes, metrics=None):
        """{scorer: {endpoint: score in [0, 1]}} before weighting, and whether the request is cold."""
        metrics = metrics or {}
        matched = {e: self.index.matched_blocks(e, hashes) for e in endpoints}
        waiting = {e: float((metrics.get(e) or {}).get(WAITING_METRIC, 0.0)) for e in endpoints}
        low, high = min(waiting.values()), max(waiting.values())
        cold = not any(matched.values())
        return {
            "queue-scorer": {e: 1.0 if high == low else (high - waiting[e]) / (high - low) for e in endpoints},
            "kv-cache-utilization-scorer": {
                e: 1.0 - float((metrics.get(e) or {}).get(KV_USAGE_METRIC, 0.0)) for e in endpoints},
            "prefix-cache-scorer": {e: (matched[e] / len(hashes)) if hashes else 0.0 for e in endpoints},
            "no-hit-lru-scorer": self.no_hit_lru.scores(endpoints, cold),
        }, cold

    def scores(self, endpoints, hashes, metrics=None):
        """Weighted score per endpoint (higher is better)."""
        per_scorer, _cold = self.scorer_scores(endpoints, hashes, metrics)
        return {e: sum(self.weights.get(name, 0.0) * values[e] for name, values in per_scorer.items())
                for e in endpoints}

    def pick(self, endpoints, text, metrics=None):
        """Choose one of ``endpoints`` for a prompt; returns (endpoint, matched_blocks, total_blocks).

        ``metrics``: {endpoint: {metric name: value}} as last scraped (WAITING_METRIC, KV_USAGE_METRIC).
        """
        if not endpoints:
            raise ValueError("no endpoints to pick from")
        hashes = block_hashes(tokenize(text))
        per_scorer, cold = self.scorer_scores(endpoints, hashes, metrics)
        scores = {e: sum(self.weights.get(name, 0.0) * values[e] for name, values in per_scorer.items())
                  for e in endpoints}
        turn = next(self._tiebreak)
        order = {e: (i - turn) % len(endpoints) for i, e in enumerate(endpoints)}
        best = max(endpoints, key=lambda e: (round(scores[e], 9), -order[e]))
        matched = self.index.matched_blocks(best, hashes)
        self.index.record(best, hashes)
        if cold:
            self.no_hit_lru.used_for_cold(best)
        return best, matched, len(hashes)


def weights_from_config(text):
    """Scorer weights of an EndpointPickerConfig (the EPP's ``--config-text``) for the scorers simulated here.

    The profile used is ``default`` (single-profile-handler), else the first one. A pluginRef's type comes from
    ``plugins[]`` (name defaults to type); a scorer without ``weight`` counts 1 (gateway-api-inference-extension
    pkg/epp/config/loader/defaults.go, DefaultScorerWeight). Returns (weights, types of other scorers, which the
    simulation ignores).
    """
    config = yaml.safe_load(text) if isinstance(text, str) else text
    if not isinstance(config, dict):
        raise ValueError("EndpointPickerConfig is not a mapping")
    types = {(p.get("name") or p.get("type")): p.get("type") for p in config.get("plugins") or []}
    profiles = config.get("schedulingProfiles") or []
    profile = next((p for p in profiles if p.get("name") == "default"), profiles[0] if profiles else {})
    weights, ignored = {}, []
    for ref in profile.get("plugins") or []:
        kind = types.get(ref.get("pluginRef"), ref.get("pluginRef"))
        if kind in KSERVE_DEFAULT_WEIGHTS:
            weights[kind] = float(ref.get("weight", 1))
        elif kind and kind.endswith("-scorer"):
            ignored.append(kind)
    return weights, ignored


def parse_metrics(text, names=(WAITING_METRIC, KV_USAGE_METRIC)):
    """{name: value} of the wanted gauges in a Prometheus text exposition (samples of one name summed)."""
    values = {}
    names = tuple(names)
    for line in text.splitlines():
        if not line.startswith(names):  # comments and the ~200 other samples, without splitting them
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            try:
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return values


class RoundRobin:
    """Plain rotation over endpoints (Service backends, and the EPP's FailOpen fallback)."""

    def __init__(self):
        self._counter = itertools.count()

    def pick(self, endpoints):
        if not endpoints:
            raise ValueError("no endpoints to pick from")
        return endpoints[next(self._counter) % len(endpoints)]
