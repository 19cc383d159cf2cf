#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
---
module: report_charts
short_description: Draw the charts of a verification or cost report as SVG files beside its Markdown
version_added: 0.1.0
description:
  - Draws the charts of one report with the pure-Python plotting library pygal and writes them as SVG files
    C(<dest>/<basename>-<chart>.svg), so that the Markdown report next to them can show them with relative
    links (C(![title](<basename>-<chart>.svg))).
  - For O(report_type=verification) (the C(verification_result) of the C(llm_serving.gke.verification) role)
    C(throughput) (requests per second per load step), C(latency) (E2E and TTFT p95 per load step),
    C(replicas) (request share and prefix-cache hit rate per replica) and C(hit-rates) (measured hit rate
    against round robin and the best possible); each only when the report has the data.
  - For O(report_type=cost) (the C(cost_matrix) of C(playbooks/cost_report.yml)) C(daily) (cost per day per
    pattern and price book) and, when a throughput was measured, C(per-million) (cost per 1M requests, its
    title saying where the throughput was measured).
  - The charts plot the report's own numbers. Files are rewritten only when their content changes (the
    drawing is deterministic), and O(dest) is created when missing.
  - Without pygal on the host that runs the module, no chart is written, RV(charts) is empty and a warning
    says so; the reports then keep their text charts.
author:
  - llm_serving.gke maintainers (@llm-serving)
requirements:
  - pygal >= 3.0 (pure Python; optional, see the description)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports which files would change and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  report_type:
    description: Which report O(data) is.
    type: str
    choices: [verification, cost]
    required: true
  data:
    description:
      - For C(verification) the C(verification_result) dict; for C(cost) the list of cost matrix rows (dicts
        with C(pattern), C(book), C(daily_usd) and optionally C(per_million_usd) and
        C(throughput_measured_on)).
    type: raw
    required: true
  dest:
    description: Directory of the Markdown report; the SVG files are written there.
    type: path
    required: true
  basename:
    description: File name prefix, usually the Markdown report's name without C(.md).
    type: str
    required: true
  json_report:
    description:
      - Also write O(data) as the JSON report to this path, with the key C(report_charts) added (the paths of the
        charts written; empty without pygal) - in the same module run, instead of a C(copy) task after this one.
      - Written with sorted keys and 2 spaces of indentation (as C(to_nice_json(indent=2))), only when the content
        differs; not in check mode. O(data) must be a dict for it.
    type: path
    version_added: 0.3.0
seealso:
  - module: llm_serving.gke.inference_benchmark
  - module: llm_serving.gke.prefix_cache_check
"""

EXAMPLES = r"""
- name: Draw the charts of the verification report
  llm_serving.gke.report_charts:
    report_type: verification
    data: "{{ verification_result }}"
    dest: /tmp/reports
    basename: verification-demo-20261202T101500Z
  register: charts

- name: Link them from the Markdown report
  ansible.builtin.debug:
    msg: "{{ charts.charts | map(attribute='file') | map('regex_replace', '^(.*)$', '![chart](\\1)') | list }}"
"""

RETURN = r"""
charts:
  description: The charts written (or, in check mode, that would be written), in report order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Chart name (for example C(throughput), C(replicas), C(daily)).
      type: str
    file:
      description: File name, relative to O(dest) (what the Markdown links).
      type: str
    path:
      description: Full path of the file.
      type: str
    title:
      description: The chart's title, also usable as the image's alt text.
      type: str
    alt:
      description: Alt text for the Markdown image.
      type: str
  sample:
    - {name: throughput, file: verification-demo-20261202T101500Z-throughput.svg,
       path: /tmp/reports/verification-demo-20261202T101500Z-throughput.svg,
       title: "Throughput per step (req/s, GKE)", alt: "Throughput per step (req/s, GKE)"}
json_report:
  description: O(json_report) as written (or, in check mode, as it would be written).
  returned: when O(json_report) is set
  type: str
library:
  description: The plotting library and its version, or null when it is not installed.
  returned: always
  type: str
  sample: pygal 3.1.3
"""

import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.llm_serving.gke.plugins.module_utils import charts  # noqa: E402

ARGUMENT_SPEC = dict(
    report_type=dict(type="str", choices=["verification", "cost"], required=True),
    data=dict(type="raw", required=True),
    dest=dict(type="path", required=True),
    basename=dict(type="str", required=True),
    json_report=dict(type="path"),
)


def write_json_report(path, data, chart_paths, check_mode):
    """Write ``data`` plus ``report_charts`` to ``path`` as indented JSON; True when the file changed."""
    text = json.dumps(dict(data, report_charts=chart_paths), indent=2, sort_keys=True, separators=(",", ": ")) + "\n"
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    if not check_mode:
        temporary = f"{path}.tmp{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    return True


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if not params["basename"] or "/" in params["basename"]:
        module.fail_json(msg=f"basename must be a file name prefix without '/', got {params['basename']!r}")
    try:
        specs = (charts.verification_specs if params["report_type"] == "verification" else charts.cost_specs)(
            params["data"])
    except charts.ChartDataError as exc:
        module.fail_json(msg=f"report_charts ({params['report_type']} report): {exc}")
    changed = False
    if not os.path.isdir(params["dest"]):
        changed = True
        if not module.check_mode:
            try:
                os.makedirs(params["dest"], mode=0o755, exist_ok=True)
            except OSError as exc:
                module.fail_json(msg=f"dest {params['dest']!r}: cannot create the report directory: {exc}")
    if params["json_report"] and not isinstance(params["data"], dict):
        module.fail_json(msg=f"json_report needs data to be a dict (the verification_result), got "
                             f"{type(params['data']).__name__}")
    written, library = [], None
    if charts.pygal is None:
        module.warn("pygal is not installed on this host: no charts were drawn; the reports keep their text charts "
                    "(pip install pygal, see the collection's requirements.txt)")
    else:
        library = f"pygal {getattr(charts.pygal, '__version__', 'unknown')}"
        try:
            written, files_changed = charts.write_charts(specs, params["dest"], params["basename"], module.check_mode)
        except OSError as exc:
            module.fail_json(msg=f"dest {params['dest']!r}: cannot write the charts: {exc}")
        changed = changed or files_changed
    extra = {}
    if params["json_report"]:
        try:
            changed = write_json_report(params["json_report"], params["data"], [c["path"] for c in written],
                                        module.check_mode) or changed
        except OSError as exc:
            module.fail_json(msg=f"json_report {params['json_report']!r}: cannot write the JSON report: {exc}")
        extra["json_report"] = params["json_report"]
    module.exit_json(changed=changed, charts=written, library=library, **extra)


if __name__ == "__main__":
    main()
