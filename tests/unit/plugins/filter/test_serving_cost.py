"""serving_cost filter: formula, built-in price books, the seed's arithmetic, and input errors."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.filter.serving_cost import (
    FilterModule,
    available_price_books,
    load_price_book,
    serving_cost,
)

P1_TPU = {"accelerator_type": "tpu-v6e-slice", "accelerator_count": 4, "machine_type": "ct6e-standard-4t",
          "replicas": 1}
P3_TPU = dict(P1_TPU, replicas=3)
P3_GPU = {"accelerator_type": "nvidia-tesla-t4", "accelerator_count": 1, "machine_type": "n1-standard-4",
          "replicas": 3, "description": "catalog keys other than the flat four are ignored"}


def flat_book(hourly_usd):
    """A custom book whose only SKU costs ``hourly_usd`` per hour."""
    return {"name": "flat", "source": "test", "date": "2026-01-01", "hourly": {"x": hourly_usd}}


def test_registered_under_its_name():
    assert FilterModule().filters()["serving_cost"] is serving_cost


def test_seed_arithmetic_3990_a_month_at_7_rps_and_80_percent_is_274_88_per_million():
    pattern = {"accelerator_type": "x", "accelerator_count": 1, "machine_type": None, "replicas": 1}
    cost = serving_cost(pattern, flat_book(3990 / 720), throughput_rps=7, utilization=0.8, hours_per_month=720)
    assert cost["monthly_usd"] == pytest.approx(3990.0)
    assert round(cost["cost_per_million_requests_usd"], 2) == 274.88


@pytest.mark.parametrize("daily, rps, expected", [
    (133.0, 5.6, 274.88),   # seed P1, 7 x 0.8 req/s
    (387.0, 16.0, 279.95),  # seed P3 TPU, 20 x 0.8 req/s
    (15.0, 16.0, 10.85),    # seed P3 GPU, 16 req/s without the 0.8 factor
])
def test_seed_cost_per_million_checks(daily, rps, expected):
    pattern = {"accelerator_type": "x", "accelerator_count": 1, "replicas": 1}
    cost = serving_cost(pattern, flat_book(daily / 24), throughput_rps=rps)
    assert round(cost["cost_per_million_requests_usd"], 2) == expected


def test_formula_accelerators_times_count_plus_host_plus_fixed_daily():
    book = {"name": "b", "source": "s", "date": "d", "hourly": {"nvidia-tesla-t4": 0.35, "n1-standard-4": 0.19},
            "fixed_daily": {"system-pool": 9.12, "lb": 0.48}}
    cost = serving_cost(P3_GPU, book)
    assert cost["replica_hourly_usd"] == pytest.approx(0.54)
    assert cost["hourly_usd"] == pytest.approx(3 * 0.54 + 9.6 / 24)
    assert cost["daily_usd"] == pytest.approx(3 * 0.54 * 24 + 9.6)
    assert cost["monthly_usd"] == pytest.approx(cost["hourly_usd"] * 730)
    assert cost["cost_per_million_requests_usd"] is None
    items = {line["item"]: line for line in cost["breakdown"]}
    assert items["nvidia-tesla-t4"]["quantity"] == 3 and items["nvidia-tesla-t4"]["unit_price_usd"] == 0.35
    assert items["n1-standard-4"]["kind"] == "machine" and items["n1-standard-4"]["hourly_usd"] == pytest.approx(0.57)
    assert items["system-pool"]["daily_usd"] == pytest.approx(9.12)
    assert all(line["source"] == "s" for line in cost["breakdown"])


def test_tpu_machine_type_is_covered_by_the_chip_price():
    cost = serving_cost(P1_TPU, "gcp-on-demand-us-central1")
    assert [line["item"] for line in cost["breakdown"] if line["kind"] != "fixed"] == ["tpu-v6e-slice"]
    assert cost["replica_hourly_usd"] == pytest.approx(10.80)
    assert cost["assumptions"]["machine_priced_separately"] is False


def test_built_in_books_exist_with_source_and_date():
    books = available_price_books()
    for name in ("gcp-on-demand-us-central1", "gcp-on-demand-europe-west4", "gcp-spot-us-central1",
                 "gcp-spot-europe-west4", "seed-2026-02"):
        assert name in books
        book = serving_cost(P1_TPU, name)["price_book"]
        assert book["name"] == name and book["source"] != "not given" and book["date"] != "not given"
        assert book["provisioning"] in ("on-demand", "spot", "seed-estimate")


@pytest.mark.parametrize("book, pattern, daily", [
    # The books' list prices (each book names its source): P1 $268 / $295 per day, P3 TPU $787 / $865, P3 GPU $48.0 /
    # $51.6 with system nodes
    ("gcp-on-demand-us-central1", P1_TPU, 268.32),
    ("gcp-on-demand-europe-west4", P1_TPU, 295.16),
    ("gcp-on-demand-us-central1", P3_TPU, 786.72),
    ("gcp-on-demand-europe-west4", P3_TPU, 865.40),
    ("gcp-on-demand-us-central1", P3_GPU, 48.00),
    ("gcp-on-demand-europe-west4", P3_GPU, 51.56),
    # Spot: P1 $71 / $79, P3 TPU $196 / $215 per day
    ("gcp-spot-us-central1", P1_TPU, 71.35),
    ("gcp-spot-europe-west4", P1_TPU, 78.51),
    ("gcp-spot-us-central1", P3_TPU, 195.82),
    ("gcp-spot-europe-west4", P3_TPU, 215.46),
])
def test_list_price_books_reproduce_the_recomputed_table(book, pattern, daily):
    assert serving_cost(pattern, book)["daily_usd"] == pytest.approx(daily, abs=0.01)


def test_seed_book_reproduces_the_seeds_own_figures():
    p1 = serving_cost(P1_TPU, "seed-2026-02", throughput_rps=7, utilization=0.8, hours_per_month=720)
    assert p1["daily_usd"] == pytest.approx(133.02)            # seed: "~$133/day"
    assert p1["monthly_usd"] == pytest.approx(3990.60)         # seed: "~$3,990/month"
    assert round(p1["cost_per_million_requests_usd"], 2) == 274.93  # seed: "$274.93"
    tpu_line = next(line for line in p1["breakdown"] if line["item"] == "tpu-v6e-slice")
    assert tpu_line["daily_usd"] == pytest.approx(126.72)      # seed: "TPU pool ~$127/day"
    gpu = serving_cost(P3_GPU, "seed-2026-02")
    gpu_line = next(line for line in gpu["breakdown"] if line["item"] == "nvidia-tesla-t4")
    assert gpu_line["daily_usd"] == pytest.approx(15.0, abs=0.01)  # seed: "3xT4 ~$15/day"


def test_on_demand_is_about_twice_the_seed_for_tpu():
    seed = serving_cost(P1_TPU, "seed-2026-02")["daily_usd"]
    list_price = serving_cost(P1_TPU, "gcp-on-demand-europe-west4")["daily_usd"]
    assert 2.0 < list_price / seed < 2.3


def test_per_item_sources_are_reported():
    line = serving_cost(P1_TPU, "gcp-on-demand-us-central1")["breakdown"][0]
    assert "tpu-v6e-4" in line["source"] and "017e250" in line["source"]


@pytest.mark.parametrize("pattern, kwargs, message", [
    (dict(P3_GPU, accelerator_type="nvidia-l4"), {}, "no hourly price for accelerator 'nvidia-l4'"),
    (dict(P3_GPU, replicas=0), {}, "replicas must be a whole number >= 1, got 0"),
    (dict(P3_GPU, replicas=True), {}, "replicas must be a whole number >= 1"),
    (dict(P3_GPU, accelerator_count=-1), {}, "accelerator_count must be a number >= 0"),
    ({"accelerator_type": "nvidia-tesla-t4", "replicas": 1}, {}, "the pattern lacks accelerator_count"),
    ("p3-gpu", {}, "the input must be a pattern dict"),
    (P3_GPU, {"throughput_rps": -1}, "throughput_rps must be a positive number"),
    (P3_GPU, {"throughput_rps": 0}, "throughput_rps must be a positive number"),
    (P3_GPU, {"utilization": 0}, r"utilization must be in \(0, 1\], got 0"),
    (P3_GPU, {"utilization": 1.2}, r"utilization must be in \(0, 1\], got 1.2"),
    (P3_GPU, {"hours_per_month": 0}, "hours_per_month must be a positive number"),
])
def test_bad_inputs_are_rejected_with_a_clear_message(pattern, kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        serving_cost(pattern, "gcp-on-demand-us-central1", **kwargs)


@pytest.mark.parametrize("book, message", [
    ("gcp-on-demand-mars-1", "unknown price_book 'gcp-on-demand-mars-1'; built-in books: gcp-on-demand"),
    ("../../etc/passwd", "is not a book name"),
    ({"name": "empty"}, "has no hourly prices"),
    ({"hourly": {"nvidia-tesla-t4": "cheap"}}, "hourly.nvidia-tesla-t4 must be a non-negative number"),
    ({"hourly": {"nvidia-tesla-t4": 0.3}, "fixed_daily": [1]}, "fixed_daily must be a dict"),
    (42, "price_book must be a built-in book name or a dict"),
])
def test_bad_price_books_are_rejected(book, message):
    with pytest.raises(AnsibleFilterError, match=message):
        serving_cost(P3_GPU, book)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("pattern, kwargs, message", [
    (P3_GPU, {"throughput_rps": NAN}, "throughput_rps must be a finite number, got nan"),
    (P3_GPU, {"throughput_rps": INF}, "throughput_rps must be a finite number, got inf"),
    (P3_GPU, {"utilization": NAN}, "utilization must be a finite number, got nan"),
    (P3_GPU, {"hours_per_month": INF}, "hours_per_month must be a finite number, got inf"),
    (P3_GPU, {"hours_per_month": NAN}, "hours_per_month must be a finite number, got nan"),
    (dict(P3_GPU, accelerator_count=NAN), {}, "accelerator_count must be a finite number, got nan"),
    (dict(P3_GPU, accelerator_count=INF), {}, "accelerator_count must be a finite number, got inf"),
])
def test_nan_and_infinity_are_refused_by_input_name(pattern, kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        serving_cost(pattern, "gcp-on-demand-us-central1", **kwargs)


@pytest.mark.parametrize("section, item, price", [
    ("hourly", "nvidia-tesla-t4", NAN),
    ("hourly", "nvidia-tesla-t4", INF),
    ("fixed_daily", "lb", NAN),
    ("fixed_daily", "lb", INF),
])
def test_nan_and_infinity_in_a_book_are_refused_by_item(section, item, price):
    book = {"name": "b", "hourly": {"nvidia-tesla-t4": 0.35, "n1-standard-4": 0.19}}
    book.setdefault(section, {})[item] = price
    with pytest.raises(AnsibleFilterError, match=rf"{section}\.{item} must be a finite number"):
        serving_cost(P3_GPU, book)


def test_machine_type_neither_priced_nor_included_is_an_error_naming_it():
    book = {"name": "gpu-only", "hourly": {"nvidia-tesla-t4": 0.35}}
    with pytest.raises(AnsibleFilterError, match="no hourly price for machine type 'n1-standard-4'"):
        serving_cost(P3_GPU, book)


def test_a_gpu_host_missing_from_a_built_in_book_is_an_error_naming_the_sku():
    pattern = dict(P3_GPU, machine_type="g2-standard-8")
    with pytest.raises(AnsibleFilterError, match="'gcp-on-demand-us-central1' has no hourly price for machine "
                                                 "type 'g2-standard-8'.*ct6e-standard-4t"):
        serving_cost(pattern, "gcp-on-demand-us-central1")


def test_included_machine_type_adds_nothing_and_says_so():
    book = {"name": "b", "hourly": {"tpu-v6e-slice": 2.70}, "included_machine_types": ["ct6e-standard-4t"]}
    cost = serving_cost(P1_TPU, book)
    assert cost["hourly_usd"] == pytest.approx(10.80)
    assert cost["assumptions"]["machine_included_in_accelerator_price"] is True
    assert cost["assumptions"]["machine_priced_separately"] is False


@pytest.mark.parametrize("name", ["gcp-on-demand-us-central1", "gcp-on-demand-europe-west4", "gcp-spot-us-central1",
                                  "gcp-spot-europe-west4", "seed-2026-02"])
def test_every_built_in_book_lists_the_tpu_vm_as_included(name):
    book = load_price_book(name)
    assert "ct6e-standard-4t" in book["included_machine_types"]
    assert "n1-standard-4" in book["hourly"] or "n1-standard-4" in book["included_machine_types"]


@pytest.mark.parametrize("book_extra, message", [
    ({"sources": ["SkyPilot"]}, "sources must be a dict of SKU or item: source text, got list"),
    ({"sources": "SkyPilot catalog"}, "sources must be a dict of SKU or item: source text, got str"),
    ({"sources": {"nvidia-tesla-t4": 0.35}}, "sources.nvidia-tesla-t4 must be a non-empty text"),
    ({"sources": {"nvidia-tesla-t4": " "}}, "sources.nvidia-tesla-t4 must be a non-empty text"),
    ({"included_machine_types": "ct6e-standard-4t"}, "included_machine_types must be a list of machine types"),
    ({"included_machine_types": [None]}, "included_machine_types entries must be machine type names"),
    ({"included_machine_types": ["n1-standard-4"]}, "'n1-standard-4' is both priced in hourly and listed"),
])
def test_malformed_book_fields_are_refused_with_a_clear_message(book_extra, message):
    book = dict({"name": "b", "hourly": {"nvidia-tesla-t4": 0.35, "n1-standard-4": 0.19}}, **book_extra)
    with pytest.raises(AnsibleFilterError, match=message):
        serving_cost(P3_GPU, book)


def test_filter_resolves_by_its_fqcn_in_ansible():
    root = Path(__file__).resolve().parents[4]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root / ".cache" / "collections"), ANSIBLE_NOCOLOR="1")
    expr = ("{{ (p | llm_serving.gke.serving_cost(price_book='gcp-on-demand-us-central1', throughput_rps=10, "
            "utilization=0.8)).cost_per_million_requests_usd | round(2) }}")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m",
         "ansible.builtin.debug", "-a", "msg=" + expr, "-e", json.dumps({"p": P3_GPU})],
        capture_output=True, text=True, env=env, cwd=root, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    # 3 x (T4 0.35 + n1-standard-4 0.19) + 9.12/24 system pool = $2.00/h; at 8 req/s: 2 / 28800 * 1e6
    assert re.search(r"msg\W+69\.44\b", out.stdout), out.stdout
