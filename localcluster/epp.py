"""Prefix-cache-aware endpoint picker of the simulated GKE gateway (pure logic, no I/O).

Mirrors llm-d's default EPP profile: a prefix-cache scorer (weight 2) that scores each endpoint by the
fraction of the prompt's 16-token blocks it is believed to hold, plus a queue scorer (weight 1) that
prefers endpoints with fewer in-flight requests; ties go to the least loaded endpoint. The per-endpoint
index is approximate, like llm-d's: it records the blocks of every prompt routed to an endpoint and
forgets the least recently used ones beyond a capacity.
"""
import collections
import itertools

from localcluster.tokens import block_hashes, tokenize

PREFIX_WEIGHT = 2.0
QUEUE_WEIGHT = 1.0
DEFAULT_BLOCKS_PER_ENDPOINT = 31250


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


class PrefixAwarePicker:
    """Scores endpoints like llm-d's prefix-cache + queue scorers and records the choice."""

    def __init__(self, capacity=DEFAULT_BLOCKS_PER_ENDPOINT, prefix_weight=PREFIX_WEIGHT, queue_weight=QUEUE_WEIGHT):
        self.index = PrefixIndex(capacity)
        self.prefix_weight = prefix_weight
        self.queue_weight = queue_weight
        self._tiebreak = itertools.count()

    def scores(self, endpoints, hashes, inflight):
        """Weighted score per endpoint (higher is better)."""
        loads = [inflight.get(e, 0) for e in endpoints]
        low, high = min(loads), max(loads)
        result = {}
        for endpoint, load in zip(endpoints, loads, strict=False):
            prefix = self.index.matched_blocks(endpoint, hashes) / len(hashes) if hashes else 0.0
            queue = 1.0 if high == low else (high - load) / (high - low)
            result[endpoint] = self.prefix_weight * prefix + self.queue_weight * queue
        return result

    def pick(self, endpoints, text, inflight):
        """Choose one of ``endpoints`` for a prompt; returns (endpoint, matched_blocks, total_blocks)."""
        if not endpoints:
            raise ValueError("no endpoints to pick from")
        hashes = block_hashes(tokenize(text))
        scores = self.scores(endpoints, hashes, inflight)
        turn = next(self._tiebreak)
        order = {e: (i - turn) % len(endpoints) for i, e in enumerate(endpoints)}
        best = max(endpoints, key=lambda e: (round(scores[e], 9), -inflight.get(e, 0), -order[e]))
        matched = self.index.matched_blocks(best, hashes)
        self.index.record(best, hashes)
        return best, matched, len(hashes)


class RoundRobin:
    """Plain rotation over endpoints (Service backends, and the EPP's FailOpen fallback)."""

    def __init__(self):
        self._counter = itertools.count()

    def pick(self, endpoints):
        if not endpoints:
            raise ValueError("no endpoints to pick from")
        return endpoints[next(self._counter) % len(endpoints)]
