"""Client traffic at a fixed rate through the gateway until a stop file appears (molecule/switch).

Sends one small ``/v1/completions`` request every ``1/rate`` seconds (open loop: a slow or failed request
does not delay the next one), records the outcome of every request and writes a JSON summary:
``sent``, ``succeeded``, ``failed``, ``errors`` (count per class), ``error_examples``, ``failures`` (start
time and class of the first 100), ``first_start`` / ``last_end`` (epoch seconds) and ``finished``.
``--ready-file`` is written after the first success, so the caller knows the traffic reaches the model
before it starts the switch.
"""

import argparse
import asyncio
import collections
import json
import os
import time

import aiohttp

MAX_FAILURES_LISTED = 100


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="stable URL without /v1, e.g. http://127.0.0.1/ns/route")
    parser.add_argument("--model", required=True, help="served model name")
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second")
    parser.add_argument("--stop-file", required=True, help="stop sending once this file exists")
    parser.add_argument("--ready-file", required=True, help="written after the first successful request")
    parser.add_argument("--output", required=True, help="JSON summary written at the end")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="stop after this long in any case")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    return parser.parse_args()


async def one_request(session, url, payload, timeout):
    """Returns (start, end, error class or None, detail)."""
    start = time.time()
    try:
        async with session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            body = await response.text()
            if response.status != 200:
                return start, time.time(), f"http_{response.status}", body[:200]
            if not json.loads(body).get("choices"):
                return start, time.time(), "no_choices", body[:200]
            return start, time.time(), None, ""
    except TimeoutError:
        return start, time.time(), "timeout", f"no answer within {timeout}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return start, time.time(), "connection_error" if isinstance(exc, OSError) else "protocol_error", str(exc)


async def run(args):
    url = args.base_url.rstrip("/") + "/v1/completions"
    deadline = time.monotonic() + args.max_seconds
    interval = 1.0 / args.rate
    tasks = []
    async with aiohttp.ClientSession() as session:
        index = 0
        next_at = time.monotonic()
        while time.monotonic() < deadline and not os.path.exists(args.stop_file):
            payload = {
                "model": args.model,
                "prompt": f"Request {index}: say something about the number {index}.",
                "max_tokens": 8,
                "temperature": 0,
            }
            tasks.append(asyncio.create_task(one_request(session, url, payload, args.timeout)))
            if not os.path.exists(args.ready_file) and any(t.done() and t.result()[2] is None for t in tasks):
                with open(args.ready_file, "w", encoding="utf-8") as handle:
                    handle.write(str(time.time()))
            index += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        return await asyncio.gather(*tasks)


def summarise(results):
    errors = collections.Counter(error for _s, _e, error, _d in results if error)
    examples = {}
    for _start, _end, error, detail in results:
        if error and error not in examples:
            examples[error] = detail
    # When each failure happened, to line them up with the switch steps and component logs.
    failures = [{"start": start, "error": error} for start, _end, error, _detail in results if error]
    return {
        "sent": len(results),
        "succeeded": sum(1 for r in results if r[2] is None),
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "error_examples": examples,
        "failures": failures[:MAX_FAILURES_LISTED],
        "first_start": min((r[0] for r in results), default=None),
        "last_end": max((r[1] for r in results), default=None),
        "finished": True,
    }


def main():
    args = parse_args()
    summary = summarise(asyncio.run(run(args)))
    summary.update({"rate": args.rate, "base_url": args.base_url})
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
