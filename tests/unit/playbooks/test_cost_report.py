"""playbooks/cost_report.yml: the seed's table reproduced and explained, like-with-like ratios, sourced figures."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart_svg import read_chart
from tests.unit.once_per_session import once_per_session

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    # One cost_report.yml run shared by both xdist workers.
    return Path(once_per_session(tmp_path_factory, "cost-report", _cost_report))


def _cost_report(reports):
    # A verification report from the local cluster (simulated throughput) and one from before measured_on existed.
    (reports / "verification-qwen2-3b-pattern3-gpu-20261202T070000Z.json").write_text(json.dumps(
        {"measured_on": "local-simulator", "benchmark": {"requests_per_second": 12.5}}))
    (reports / "verification-qwen2-3b-pattern1-20261202T070000Z.json").write_text(json.dumps(
        {"benchmark": {"requests_per_second": 3.0}}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1")
    handover = {"cost_measured_throughput": {"qwen2-3b-pattern3": {"requests_per_second": 20, "measured_on": "gke"}}}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), str(ROOT / "playbooks" / "cost_report.yml"),
         "-e", f"llm_serving_report_dir={reports}", "-e", json.dumps(handover)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    return str(reports)


@pytest.fixture(scope="module")
def report(report_dir):
    return (report_dir / "cost-report.md").read_text()


def row(text, *cells):
    """The Markdown table row that starts with these cells."""
    prefix = "| " + " | ".join(cells) + " |"
    return next(line for line in text.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize("cells, reproduced", [
    (("p1-tpu", "~$133/day"), "$133.02/day"),
    (("p1-tpu", "~$3,990/month"), "$3,990.60/month"),
    (("p1-tpu", "$275 ($274.93) per 1M at 5-7 req/s"), "$274.93 per 1M"),
    (("p3-tpu", "~$387/day"), "$386.46/day"),
    (("p3-tpu", "~$11,610/month"), "$387 x 30 = $11,610"),
    (("p3-tpu", "$280 ($280.03) per 1M at 15-20 req/s"), "$279.56 per 1M"),
    (("p3-gpu", "~$15/day (T4 nodes only)"), "$15.00/day"),
    (("p3-gpu", "~$450/month"), "$449.99/month"),
    (("p3-gpu", "$10 per 1M at 16-17 req/s"), "$10.85 per 1M"),
])
def test_each_seed_figure_is_reproduced_with_its_computation(report, cells, reproduced):
    line = row(report, *cells)
    assert reproduced in line
    assert re.search(r"x 24|x 30 days|x 86,400 s\) x 1e6", line)


@pytest.mark.parametrize("title, computation", [
    ("TPU at $1.32 per chip-hour against the $2.70 list price",
     "$126.72 = 4 chips x $1.32/h x 24. On-demand list: gcp-on-demand-europe-west4 $2.97/chip-h = $285.12/day "
     "(2.25x); gcp-on-demand-us-central1 $2.70/chip-h = $259.20/day (2.05x)"),
    ("The T4 node priced like Spot",
     "$15 / 3 / 24 = $0.2083 per node-hour, host VM included. On-demand T4 + n1-standard-4: "
     "gcp-on-demand-europe-west4 $0.5767 (2.77x); gcp-on-demand-us-central1 $0.5400 (2.59x). Spot T4 + "
     "n1-standard-4: gcp-spot-europe-west4 $0.2178 (1.05x); gcp-spot-us-central1 $0.1882 (0.90x)"),
    ('"$10 per 1M" is $10.85 by its own method', "$15.00 / (16 req/s x 1 x 86,400 s) x 1e6 = $10.85"),
    ("The per-request table is 41x off",
     "p1-tpu: $0.0000066 per request x 1e6 = $6.60 per 1M, against $274.93 per 1M by its own method: 41.7x off"),
    ("Default pool and load balancer priced below list",
     "$6.00 / 48 node-hours = $0.125 per node-hour. On-demand list: gcp-on-demand-europe-west4 $0.20917/h = "
     "$10.04/day (1.67x); gcp-on-demand-us-central1 $0.19/h = $9.12/day (1.52x)"),
])
def test_each_seed_error_is_named_with_its_computation(report, title, computation):
    line = next(line for line in report.splitlines() if f"**{title}.**" in line)
    assert computation in line


def test_x_seed_compares_the_same_nodes(report):
    # Nodes only: on-demand europe-west4 T4 nodes 41.52 / seed 15.00 = 2.77 (not 51.56 / 21.30 = 2.42, which mixed
    # the list book's default pool with the seed's default pool and load balancer).
    assert "| 41.52 | 10.04 | 51.56 | 1,568 | 2.77 |" in row(report, "p3-gpu", "gcp-on-demand-europe-west4")
    assert "| 285.12 | 10.04 | 295.16 | 8,978 | 2.25 |" in row(report, "p1-tpu", "gcp-on-demand-europe-west4")
    assert "| 68.47 | 10.04 | 78.51 | 2,388 | 0.54 |" in row(report, "p1-tpu", "gcp-spot-europe-west4")


def test_notes_agree_with_the_computed_ratios(report):
    notes = " ".join(report.split("Notes (computed")[1].split("##")[0].split())
    assert "on-demand list prices are 2.05-2.25x the seed's price for the TPU nodes and 2.59-2.77x for the T4 " \
           "nodes; Spot prices are 0.49-0.54x for TPU and 0.90-1.05x for T4" in notes


def test_spot_prices_carry_their_catalog_commit_and_date(report):
    for book in ("gcp-spot-europe-west4", "gcp-spot-us-central1"):
        line = next(line for line in report.splitlines() if line.startswith(f"- `{book}` (spot)"))
        assert "commit 017e250" in line and "copied on 2026-11-27" in line


def test_cost_per_1m_says_where_its_throughput_was_measured_in_the_same_line(report):
    assert "$59.68 from SIMULATED throughput (local simulator, not a GKE figure)" in row(
        report, "p3-gpu", "gcp-on-demand-europe-west4")
    assert "$626.01 from throughput measured on GKE" in row(report, "p3-tpu", "gcp-on-demand-europe-west4")
    assert "from throughput source not stated" in row(report, "p1-tpu", "gcp-on-demand-europe-west4")


def number(text):
    """1,423.42 (chart) and 1423.42 (table) are the same figure."""
    return float(text.replace(",", ""))


def test_the_report_shows_cost_per_pattern_and_book_as_svg_charts_of_its_own_numbers(report_dir, report):
    assert "![Cost per day by pattern and price book (USD)](cost-report-daily.svg)" in report
    per_million_link = next(line for line in report.splitlines() if line.endswith("(cost-report-per-million.svg)"))
    assert "SIMULATED throughput" in per_million_link
    daily = read_chart(str(report_dir / "cost-report-daily.svg"))
    per_million = read_chart(str(report_dir / "cost-report-per-million.svg"))
    assert daily["x_labels"] == ["p1-tpu", "p3-tpu", "p3-gpu"]
    assert daily["legend"][0] == "seed-2026-02" and len(daily["legend"]) == 5
    for pattern in daily["x_labels"]:
        for book in daily["legend"]:
            cells = row(report, pattern, book).split(" | ")
            assert number(daily["series"][book][pattern]) == number(cells[4])  # Total $/day
            per_1m = re.match(r"\$([0-9,.]+) from", cells[8])
            plotted = per_million["series"][book].get(pattern)
            assert (number(plotted) if plotted else None) == (number(per_1m.group(1)) if per_1m else None)
    assert per_million["series"]["gcp-on-demand-europe-west4"]["p3-gpu"] == "59.68"


@pytest.mark.parametrize("pattern", ["p1-tpu", "p3-tpu", "p3-gpu"])
def test_the_pattern_pages_show_the_reports_like_with_like_figures(report, pattern):
    page = (ROOT / "docs" / "patterns" / f"{pattern}.md").read_text()
    cost = page.split("## Cost")[1].split("\n## ")[0]
    assert "| Price book | Nodes $/day | Fixed $/day | Total $/day | $/month | x seed (nodes) |" in cost
    books = ["seed-2026-02", "gcp-on-demand-europe-west4", "gcp-spot-europe-west4", "gcp-on-demand-us-central1",
             "gcp-spot-us-central1"]
    for book in books:
        figures = row(report, pattern, book).split(" | ")[2:7]  # nodes, fixed, total, month, x seed
        line = next(line for line in cost.splitlines() if line.startswith(f"| {book}"))
        assert line.split(" | ")[1:] == figures[:4] + [figures[4] + " |"], (book, line)
