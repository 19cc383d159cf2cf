"""Tokenizer and KV-cache block hashing shared by the vLLM simulator and the gateway's EPP.

Both sides must agree on what a "block" is, as vLLM and llm-d's prefix-cache scorer do: a prompt is
split into tokens, tokens are grouped into fixed-size blocks, and each full block is identified by a
hash chained over all blocks before it (so equal hashes mean equal prefixes).
"""
import hashlib
import re

BLOCK_SIZE = 16
_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text):
    """Split text into word and punctuation tokens (about one token per English word)."""
    return _TOKEN_RE.findall(text or "")


def block_hashes(tokens, block_size=BLOCK_SIZE):
    """Chained hashes of every *full* block of ``tokens``; a partial last block is not cacheable."""
    hashes = []
    prev = b""
    for start in range(0, len(tokens) - block_size + 1, block_size):
        digest = hashlib.sha1(prev + "\x1f".join(tokens[start:start + block_size]).encode()).digest()
        hashes.append(digest[:8].hex())
        prev = digest
    return hashes
