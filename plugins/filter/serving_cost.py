# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""serving_cost filter: hourly, daily, monthly and per-1M-request cost of a serving pattern.

Documentation: serving_cost.yml next to this file (``ansible-doc -t filter llm_serving.gke.serving_cost``).
"""

import math
import os
from collections.abc import Mapping

import yaml
from ansible.errors import AnsibleFilterError

PRICE_BOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "price_books")
PATTERN_KEYS = ("accelerator_type", "accelerator_count", "machine_type", "replicas")


def available_price_books():
    """Names of the built-in price books (data/price_books/<name>.yml)."""
    if not os.path.isdir(PRICE_BOOK_DIR):
        return []
    return sorted(name[:-4] for name in os.listdir(PRICE_BOOK_DIR) if name.endswith(".yml"))


def load_price_book(name):
    """Read a built-in price book by name; AnsibleFilterError lists the known names when it does not exist."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise AnsibleFilterError(f"serving_cost: price_book {name!r} is not a book name")
    path = os.path.join(PRICE_BOOK_DIR, name + ".yml")
    if not os.path.isfile(path):
        raise AnsibleFilterError(
            f"serving_cost: unknown price_book {name!r}; built-in books: {', '.join(available_price_books())}")
    with open(path) as handle:
        book = yaml.safe_load(handle)
    return _validated_book(book, f"price book file {path}")


def _is_number(value):
    """A real int or float; bool is not a number here."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked_finite(name, value):
    """Refuse NaN and infinity by input name (Jinja's ``'nan' | float`` and ``'inf' | float`` produce them)."""
    if _is_number(value) and not math.isfinite(value):
        raise AnsibleFilterError(f"serving_cost: {name} must be a finite number, got {value!r}")


def _validated_sources(sources, where):
    """``sources`` is an optional dict of SKU or item: text."""
    if sources is None:
        return {}
    if not isinstance(sources, Mapping):
        raise AnsibleFilterError(
            f"serving_cost: {where}: sources must be a dict of SKU or item: source text, got {type(sources).__name__}")
    result = {}
    for item, text in sources.items():
        if not isinstance(text, str) or not text.strip():
            raise AnsibleFilterError(
                f"serving_cost: {where}: sources.{item} must be a non-empty text naming where the price comes from, "
                f"got {text!r}")
        result[str(item)] = text
    return result


def _validated_included(included, hourly, where):
    """``included_machine_types``: machine types whose price is part of the accelerator price (TPU VMs)."""
    if included is None:
        return []
    if isinstance(included, (str, bytes)) or not isinstance(included, (list, tuple)):
        raise AnsibleFilterError(
            f"serving_cost: {where}: included_machine_types must be a list of machine types, got {included!r}")
    result = []
    for machine_type in included:
        if not isinstance(machine_type, str) or not machine_type:
            raise AnsibleFilterError(
                f"serving_cost: {where}: included_machine_types entries must be machine type names, "
                f"got {machine_type!r}")
        if machine_type in hourly:
            raise AnsibleFilterError(
                f"serving_cost: {where}: machine type {machine_type!r} is both priced in hourly and listed in "
                "included_machine_types; it is either billed separately or included in the accelerator price")
        result.append(machine_type)
    return result


def _validated_book(book, where):
    if not isinstance(book, Mapping):
        raise AnsibleFilterError(f"serving_cost: {where} must be a dict with hourly and fixed_daily prices")
    result = {
        "name": str(book.get("name") or "custom"),
        "source": str(book.get("source") or "not given"),
        "date": str(book.get("date") or "not given"),
        "provisioning": str(book.get("provisioning") or "not given"),
        "hourly": {},
        "fixed_daily": {},
        "sources": _validated_sources(book.get("sources"), where),
    }
    for section in ("hourly", "fixed_daily"):
        prices = book.get(section) or {}
        if not isinstance(prices, Mapping):
            raise AnsibleFilterError(f"serving_cost: {where}: {section} must be a dict of item: USD")
        for item, price in prices.items():
            _checked_finite(f"{where}: {section}.{item}", price)
            if not _is_number(price) or price < 0:
                raise AnsibleFilterError(
                    f"serving_cost: {where}: {section}.{item} must be a non-negative number, got {price!r}")
            result[section][str(item)] = float(price)
    if not result["hourly"]:
        raise AnsibleFilterError(f"serving_cost: {where} has no hourly prices")
    result["included_machine_types"] = _validated_included(
        book.get("included_machine_types"), result["hourly"], where)
    return result


def resolve_price_book(price_book):
    if isinstance(price_book, str):
        return load_price_book(price_book)
    if isinstance(price_book, Mapping):
        return _validated_book(price_book, "price_book")
    raise AnsibleFilterError(
        f"serving_cost: price_book must be a built-in book name or a dict, got {type(price_book).__name__}")


def _validated_pattern(pattern):
    if not isinstance(pattern, Mapping):
        raise AnsibleFilterError(f"serving_cost: the input must be a pattern dict, got {type(pattern).__name__}")
    missing = [key for key in PATTERN_KEYS if pattern.get(key) is None and key != "machine_type"]
    if missing:
        raise AnsibleFilterError(f"serving_cost: the pattern lacks {', '.join(missing)}")
    replicas, count = pattern["replicas"], pattern["accelerator_count"]
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise AnsibleFilterError(f"serving_cost: replicas must be a whole number >= 1, got {replicas!r}")
    _checked_finite("accelerator_count", count)
    if not _is_number(count) or count < 0:
        raise AnsibleFilterError(f"serving_cost: accelerator_count must be a number >= 0, got {count!r}")
    return replicas, count, str(pattern["accelerator_type"]), pattern.get("machine_type")


def _validated_rates(throughput_rps, utilization, hours_per_month):
    for name, value in (("throughput_rps", throughput_rps), ("utilization", utilization),
                        ("hours_per_month", hours_per_month)):
        _checked_finite(name, value)
    if throughput_rps is not None and (not _is_number(throughput_rps) or throughput_rps <= 0):
        raise AnsibleFilterError(
            f"serving_cost: throughput_rps must be a positive number of requests per second, got {throughput_rps!r}")
    if not _is_number(utilization) or not 0 < utilization <= 1:
        raise AnsibleFilterError(f"serving_cost: utilization must be in (0, 1], got {utilization!r}")
    if not _is_number(hours_per_month) or hours_per_month <= 0:
        raise AnsibleFilterError(f"serving_cost: hours_per_month must be a positive number, got {hours_per_month!r}")


def _line(book, item, kind, quantity, unit, unit_price, hourly):
    return {
        "item": item, "kind": kind, "quantity": quantity, "unit": unit, "unit_price_usd": unit_price,
        "hourly_usd": hourly, "daily_usd": hourly * 24, "source": book["sources"].get(item, book["source"]),
    }


def breakdown_lines(book, replicas, count, accelerator_type, machine_type):
    """One line per priced item: accelerators, host machines (if priced separately), fixed daily items."""
    if accelerator_type not in book["hourly"]:
        raise AnsibleFilterError(
            f"serving_cost: price book {book['name']!r} has no hourly price for accelerator {accelerator_type!r} "
            f"(priced: {', '.join(sorted(book['hourly']))})")
    unit = book["hourly"][accelerator_type]
    lines = [_line(book, accelerator_type, "accelerator", count * replicas, "per accelerator-hour", unit,
                   unit * count * replicas)]
    if machine_type and machine_type in book["hourly"]:
        unit = book["hourly"][machine_type]
        lines.append(_line(book, machine_type, "machine", replicas, "per node-hour", unit, unit * replicas))
    elif machine_type and machine_type not in book["included_machine_types"]:
        raise AnsibleFilterError(
            f"serving_cost: price book {book['name']!r} has no hourly price for machine type {machine_type!r} and "
            f"does not list it in included_machine_types (machine types whose price the accelerator price covers: "
            f"{', '.join(book['included_machine_types']) or 'none'}); add its price to hourly or, if the "
            "accelerator price includes the host VM, to included_machine_types")
    for item, per_day in sorted(book["fixed_daily"].items()):
        lines.append(_line(book, item, "fixed", 1, "per day", per_day, per_day / 24.0))
    return lines


def serving_cost(pattern, price_book, throughput_rps=None, utilization=1.0, hours_per_month=730):
    """Cost of ``pattern`` (accelerator_type, accelerator_count per replica, machine_type, replicas)."""
    replicas, count, accelerator_type, machine_type = _validated_pattern(pattern)
    _validated_rates(throughput_rps, utilization, hours_per_month)
    book = resolve_price_book(price_book)
    lines = breakdown_lines(book, replicas, count, accelerator_type, machine_type)
    hourly = sum(line["hourly_usd"] for line in lines)
    per_million = None
    if throughput_rps is not None:
        per_million = hourly / (throughput_rps * utilization * 3600.0) * 1e6
    return {
        "hourly_usd": hourly,
        "daily_usd": hourly * 24,
        "monthly_usd": hourly * hours_per_month,
        "cost_per_million_requests_usd": per_million,
        "replica_hourly_usd": sum(line["hourly_usd"] for line in lines if line["kind"] != "fixed") / replicas,
        "breakdown": lines,
        "price_book": {"name": book["name"], "source": book["source"], "date": book["date"],
                       "provisioning": book["provisioning"]},
        "assumptions": {
            "replicas": replicas, "accelerator_count": count, "accelerator_type": accelerator_type,
            "machine_type": machine_type, "machine_priced_separately": bool(machine_type)
            and machine_type in book["hourly"],
            "machine_included_in_accelerator_price": bool(machine_type)
            and machine_type in book["included_machine_types"],
            "throughput_rps": throughput_rps, "utilization": utilization,
            "hours_per_month": hours_per_month,
        },
    }


class FilterModule:
    """llm_serving.gke cost filters."""

    def filters(self):
        return {"serving_cost": serving_cost}
