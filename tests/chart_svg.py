"""Read back what a pygal SVG chart of plugins/module_utils/charts.py plots: title, x labels, legend, values.

Shared by the unit tests of the charts and the verification integration test, so both check the plotted
numbers, not only that a file exists.
"""
import xml.etree.ElementTree as ET
from pathlib import Path

SVG = "{http://www.w3.org/2000/svg}"


def _texts(element):
    return [e.text.strip() for e in element.iter(SVG + "text") if e.text and e.text.strip()]


def read_chart(path_or_text):
    """{'title', 'x_labels', 'legend', 'series': {legend title: {x label: value text}}} of one chart."""
    text = path_or_text if path_or_text.lstrip().startswith("<") else Path(path_or_text).read_text(encoding="utf-8")
    root = ET.fromstring(text.encode("utf-8"))
    groups = list(root.iter(SVG + "g"))
    title = " ".join(t for g in groups if g.get("class") == "titles"
                     for t in (e.text.strip() for e in g.iter(SVG + "text") if "plot_title" in (e.get("class") or "")))
    x_labels = [t for g in groups if g.get("class") == "axis x" for t in _texts(g)]
    legend = [t for g in groups if g.get("class") == "legends" for t in _texts(g)]
    series = {}
    plotted = [g for g in groups if (g.get("class") or "").startswith("series serie-")
               and any(d.get("class") == "value" for d in g.iter(SVG + "desc"))]
    for group in plotted:
        index = int(group.get("class").split()[1].split("-")[1])
        values = {}
        for node in group.iter(SVG + "g"):
            descs = {d.get("class"): (d.text or "") for d in node.findall(SVG + "desc")}
            if "value" in descs:
                values[descs.get("x_label")] = descs["value"]
        series[legend[index]] = values
    return {"title": title, "x_labels": x_labels, "legend": legend, "series": series}
