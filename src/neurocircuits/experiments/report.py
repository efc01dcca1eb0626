"""HTML reports: one page per run, and an index over a gallery."""

from __future__ import annotations

import html
import json
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code, pre { background: #f6f6f6; padding: 0.1em 0.3em; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return text if len(text) < 160 else text[:157] + "..."
    return str(value)


def _table(rows: dict[str, Any]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f"<table>{body}</table>"


def render_report(experiment, summary: dict, config: dict, figures: list[str], notes: str) -> str:
    numbers = {k: v for k, v in summary.items() if k != "environment"}
    figs = "".join(f'<figure><img src="{html.escape(f)}" alt="{html.escape(f)}"></figure>'
                   for f in figures)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(experiment.name)}</title><style>{_STYLE}</style></head><body>
<h1>{html.escape(experiment.name)}: {html.escape(experiment.title)}</h1>
<p>{html.escape(experiment.description)}</p>
{f"<p>{html.escape(notes)}</p>" if notes else ""}
<h2>Figures</h2>{figs or "<p>(none)</p>"}
<h2>Summary</h2>{_table(numbers)}
<h2>Configuration</h2>{_table(config.get("config", {}))}
<h2>Environment</h2>{_table(summary.get("environment", {}))}
</body></html>
"""


def render_index(entries: list[dict[str, Any]]) -> str:
    rows = []
    for e in entries:
        link = f'<a href="{html.escape(e["name"])}/report.html">{html.escape(e["name"])}</a>'
        status = html.escape(e.get("status", ""))
        headline = html.escape(e.get("headline", ""))
        thumbs = "".join(
            f'<img src="{html.escape(e["name"])}/{html.escape(f)}" style="max-width:300px">'
            for f in e.get("figures", [])[:2])
        rows.append(f"<tr><td>{link}</td><td>{status}</td><td>{headline}</td><td>{thumbs}</td></tr>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>neurocircuits gallery</title>
<style>{_STYLE}</style></head><body><h1>neurocircuits gallery</h1>
<table><tr><th>experiment</th><th>status</th><th>result</th><th>figures</th></tr>{''.join(rows)}</table>
</body></html>
"""
