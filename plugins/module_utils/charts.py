# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""SVG charts for the Markdown reports (verification report, cost report), drawn with pygal.

pygal (https://www.pygal.org, PyPI ``pygal``) is pure Python and writes SVG with the standard library's
ElementTree, so it runs wherever the modules run (controller, execution environment). Charts are described
by plain dicts (``spec``: name, title, axis titles, x labels, series) built from the reports' own data, so
the numbers on a chart are the numbers in the report's tables. Rendering is deterministic: pygal's random
chart id and its generation date are replaced, so an unchanged report rewrites byte-identical files.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module_utils boilerplate)

import hashlib
import math
import os
import re
import tempfile
import traceback

try:
    import pygal

    PYGAL_IMPORT_ERROR = None
except ImportError:  # the module reports it as a warning and the Markdown keeps its text charts
    pygal = None
    PYGAL_IMPORT_ERROR = traceback.format_exc()

WIDTH, HEIGHT = 800, 420
SIMULATED = "local simulator, not GKE"


class ChartDataError(ValueError):
    """Report data that cannot be charted; the message names the field."""


def _number(value, where):
    """A finite float, or None for a missing value (pygal leaves a gap)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ChartDataError(f"{where} must be a number or null, got {value!r}") from None
    value = float(value)
    if not math.isfinite(value):
        raise ChartDataError(f"{where} must be a finite number, got {value!r}")
    return value


def _percent(value, where):
    value = _number(value, where)
    return None if value is None else round(value * 100, 1)


def step_label(step):
    """'c=4' for a concurrency step, 'rate=2/s' for a request-rate step (as the Markdown tables label them)."""
    if step.get("concurrency") is not None:
        return f"c={step['concurrency']}"
    if step.get("request_rate") is not None:
        return f"rate={step['request_rate']}/s"
    raise ChartDataError(f"benchmark step {step!r} has neither concurrency nor request_rate")


def replica_label(url):
    """host:port of a replica URL (the table shows the full URL)."""
    return re.sub(r"^[a-z]+://", "", str(url)).rstrip("/")


def _where(measured_on):
    return {"gke": "GKE", "local-simulator": SIMULATED}.get(measured_on, "source not stated")


def verification_specs(result):
    """Chart specs of a verification report (the role's ``verification_result``)."""
    if not isinstance(result, dict):
        raise ChartDataError(f"data must be the verification_result dict, got {type(result).__name__}")
    where = _where(result.get("measured_on"))
    specs = []
    steps = (result.get("benchmark") or {}).get("steps") or []
    if steps:
        labels = [step_label(s) for s in steps]
        specs.append({
            "name": "throughput", "title": f"Throughput per step (req/s, {where})",
            "x_title": "load step", "y_title": "requests per second", "labels": labels, "format": "{:.2f}",
            "series": [("req/s", [_number(s.get("requests_per_s"), f"benchmark.steps[{i}].requests_per_s")
                                  for i, s in enumerate(steps)])]})
        specs.append({
            "name": "latency", "title": f"p95 latency per step (ms, {where})",
            "x_title": "load step", "y_title": "milliseconds", "labels": labels, "format": "{:.1f}",
            "series": [(name, [_number((s.get(key) or {}).get("p95"), f"benchmark.steps[{i}].{key}.p95")
                               for i, s in enumerate(steps)])
                       for name, key in (("E2E p95", "e2e_ms"), ("TTFT p95", "ttft_ms"))]})
    cache = result.get("cache") or {}
    replicas = cache.get("replicas") or {}
    if replicas:
        urls = sorted(replicas)
        specs.append({
            "name": "replicas", "title": f"Request share and prefix-cache hit rate per replica (%, {where})",
            "x_title": "replica", "y_title": "percent", "labels": [replica_label(u) for u in urls],
            "format": "{:.1f}", "range": (0, 100),
            "series": [(name, [_percent(replicas[u].get(key), f"cache.replicas[{u}].{key}") for u in urls])
                       for name, key in (("request share", "request_share"), ("hit rate", "hit_rate"))]})
    if cache.get("round_robin_hit_rate") is not None:
        specs.append({
            "name": "hit-rates", "title": f"Prefix-cache hit rate: measured against round robin (%, {where})",
            "x_title": None, "y_title": "percent", "labels": ["measured", "round robin", "best possible"],
            "format": "{:.1f}", "range": (0, 100),
            "series": [("hit rate", [_percent(cache.get(key), f"cache.{key}")
                                     for key in ("hit_rate", "round_robin_hit_rate", "best_hit_rate")])]})
    return specs


def cost_specs(matrix):
    """Chart specs of the cost report (``cost_matrix`` of playbooks/cost_report.yml: one row per pattern/book)."""
    if not isinstance(matrix, list) or not all(isinstance(row, dict) for row in matrix):
        raise ChartDataError("data must be the cost matrix, a list of rows (dicts with pattern, book, daily_usd)")
    if not matrix:
        return []
    patterns, books = [], []
    for index, row in enumerate(matrix):
        for key in ("pattern", "book", "daily_usd"):
            if key not in row:
                raise ChartDataError(f"cost matrix row {index} has no {key}")
        patterns += [row["pattern"]] if row["pattern"] not in patterns else []
        books += [row["book"]] if row["book"] not in books else []
    cell = {(row["pattern"], row["book"]): row for row in matrix}

    def series(key):
        return [(book, [_number(cell[(p, book)].get(key), f"cost matrix {p}/{book} {key}")
                        if (p, book) in cell else None for p in patterns]) for book in books]

    specs = [{"name": "daily", "title": "Cost per day by pattern and price book (USD)", "x_title": "pattern",
              "y_title": "USD per day", "labels": patterns, "format": "{:,.2f}", "series": series("daily_usd")}]
    measured = [row for row in matrix if row.get("per_million_usd") is not None]
    if measured:
        sources = sorted({_where(row.get("throughput_measured_on")) for row in measured})
        simulated = " SIMULATED throughput" if SIMULATED in sources else ""
        specs.append({"name": "per-million",
                      "title": f"Cost per 1M requests (USD),{simulated} throughput from {' / '.join(sources)}",
                      "x_title": "pattern", "y_title": "USD per 1M requests", "labels": patterns,
                      "format": "{:,.2f}", "series": series("per_million_usd")})
    return specs


def render(spec, chart_id):
    """SVG text of one chart spec; byte-identical for the same spec and chart_id."""
    if pygal is None:
        raise RuntimeError("pygal is not installed")
    fmt = spec.get("format", "{}")
    options = dict(js=[], print_values=True, width=WIDTH, height=HEIGHT, truncate_label=-1, truncate_legend=-1,
                   legend_at_bottom=True, title=spec["title"], x_title=spec.get("x_title"),
                   y_title=spec.get("y_title"), value_formatter=fmt.format,
                   x_label_rotation=20 if max((len(label) for label in spec["labels"]), default=0) > 12 else 0)
    if spec.get("range"):
        options["range"] = spec["range"]
    chart = pygal.Bar(**options)
    chart.x_labels = list(spec["labels"])
    for title, values in spec["series"]:
        chart.add(title, list(values))
    svg = chart.render(is_unicode=True)
    random_id = re.search(r'id="chart-([0-9a-f-]+)"', svg)
    if random_id:
        svg = svg.replace(random_id.group(1), chart_id)
    return re.sub(r"<!--Generated with pygal ([^ ]+)[^>]*-->", r"<!--Generated with pygal \1-->", svg)


def write_charts(specs, dest, basename, check_mode=False):
    """Render each spec to ``<dest>/<basename>-<name>.svg``; returns (charts, changed)."""
    charts, changed = [], False
    for spec in specs:
        file_name = f"{basename}-{spec['name']}.svg"
        path = os.path.join(dest, file_name)
        svg = render(spec, hashlib.sha1(file_name.encode()).hexdigest()[:12])
        try:
            with open(path, encoding="utf-8") as handle:
                differs = handle.read() != svg
        except OSError:
            differs = True
        if differs and not check_mode:
            handle, tmp = tempfile.mkstemp(dir=dest, prefix=".chart-", suffix=".svg")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(svg)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        changed = changed or differs
        charts.append({"name": spec["name"], "file": file_name, "path": path, "title": spec["title"],
                       "alt": spec["title"]})
    return charts, changed
