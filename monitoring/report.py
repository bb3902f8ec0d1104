"""Reports people read: a preflight's or a rollout's per-category estimates and intervals against their
thresholds (SVG charts), for a rollout the estimate over time with the stage changes and the decision, the
worst regressed examples side by side, and the numbers behind the decision. Pure: the data comes in as a
`Report` (gathered by gateway/admin/reports.py), out go Markdown or self-contained HTML.

The HTML has no script and no inline style attribute: its CSS is either embedded (a file to open or mail)
or linked (`/console/report.css`, when the console shows it under its strict Content-Security-Policy).
Every text is escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Literal

from pydantic import BaseModel, Field


class Interval(BaseModel):
    category: str
    n: int
    wins: int
    ties: int
    losses: int
    estimate: float
    lower: float
    upper: float
    threshold: float  # the drop that fails (preflight) or rolls back (rollout tolerance)
    status: str  # pass | fail | regressed | gate met | collecting
    note: str = ""  # e.g. graded pass rates


class Point(BaseModel):
    ts: float
    n: int
    estimate: float
    lower: float
    upper: float


class Mark(BaseModel):
    ts: float
    label: str
    detail: str = ""


class Example(BaseModel):
    id: str
    category: str
    question: str
    stable_answer: str
    candidate_answer: str
    decided_by: str
    explanation: str = ""


class Report(BaseModel):
    kind: Literal["preflight", "rollout"]
    title: str
    facts: list[tuple[str, str]]
    decision: str
    passed: bool | None  # None: still running
    intervals: list[Interval]
    series: dict[str, list[Point]] = Field(default_factory=dict)
    marks: list[Mark] = Field(default_factory=list)
    examples: list[Example] = Field(default_factory=list)
    feedback: list[dict[str, str]] = Field(default_factory=list)  # rows: category, arm, counts, rate


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clip(text: str, n: int = 1200) -> str:
    return text if len(text) <= n else text[:n] + " [...]"


# -- Markdown ------------------------------------------------------------------------------------------


def _bar(iv: Interval, width: int = 41) -> str:
    """A text chart on [-1, 1]: the interval as '=', the estimate as 'o', the threshold as '|'."""
    def pos(x: float) -> int:
        return round((max(-1.0, min(1.0, x)) + 1) / 2 * (width - 1))

    cells = [" "] * width
    for i in range(pos(iv.lower), pos(iv.upper) + 1):
        cells[i] = "="
    cells[pos(-iv.threshold)] = "|"
    cells[pos(iv.estimate)] = "o"
    return "`[" + "".join(cells) + "]`"


def markdown(r: Report) -> str:
    verdict = "PASS" if r.passed else "FAIL" if r.passed is False else "RUNNING"
    lines = [f"# {r.title}", "", f"**{verdict}**: {r.decision}", ""]
    lines += [f"- {k}: {v}" for k, v in r.facts] + [""]
    lines += ["## Per category", "", "Estimate of P(win) - P(loss) for the candidate, its anytime-valid interval, "
              "and the threshold (`|` at -threshold; chart from -1 to +1).", "",
              "| category | pairs | W/T/L | estimate | interval | threshold | status | chart |",
              "|---|---:|---:|---:|---:|---:|---|---|"]
    for iv in r.intervals:
        lines.append(f"| {iv.category} | {iv.n} | {iv.wins}/{iv.ties}/{iv.losses} | {iv.estimate:+.3f} | "
                     f"[{iv.lower:+.3f}, {iv.upper:+.3f}] | -{iv.threshold:g} | {iv.status}"
                     f"{' (' + iv.note + ')' if iv.note else ''} | {_bar(iv)} |")
    if r.marks:
        lines += ["", "## Timeline", ""] + [f"- {_when(m.ts)}: **{m.label}** {m.detail}" for m in r.marks]
    if r.series:
        lines += ["", "## Estimate over time", ""]
        for cat, pts in r.series.items():
            lines.append(f"- {cat}: " + ", ".join(f"{p.n} pairs {p.estimate:+.2f} [{p.lower:+.2f}, {p.upper:+.2f}]"
                                                   for p in pts[:: max(1, len(pts) // 6)]))
    if r.feedback:
        lines += ["", "## User feedback", "", "| category | arm | feedback | negative | regenerated |",
                  "|---|---|---:|---:|---:|"]
        lines += [f"| {f['category']} | {f['arm']} | {f['feedback']} | {f['negative']} | {f['regenerated']} |"
                  for f in r.feedback]
    if r.examples:
        lines += ["", "## Worst regressed examples (redacted)", ""]
        for e in r.examples:
            lines += [f"### {e.category} / {e.id} ({e.decided_by})", "", "**Prompt**", "", _quote(e.question), "",
                      "| stable | candidate |", "|---|---|",
                      f"| {_cell(e.stable_answer)} | {_cell(e.candidate_answer)} |", ""]
            if e.explanation:
                lines += [f"Judge: {_cell(e.explanation)}", ""]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in _clip(text).splitlines() or [""])


def _cell(text: str) -> str:
    return _clip(text, 600).replace("|", "\\|").replace("\n", "<br>") or "(empty)"


# -- HTML and SVG --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde}
.verdict{display:inline-block;padding:3px 10px;border-radius:4px;font-weight:600;color:#fff}
.pass{background:#1b873f}.fail{background:#c62828}.running{background:#8a6d00}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;
vertical-align:top}th{background:#f6f7fb}td.num{text-align:right;font-variant-numeric:tabular-nums}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}dt{color:#667}dd{margin:0}
.chart text{font-size:11px;fill:#445}.pair{display:grid;grid-template-columns:1fr 1fr;gap:10px}
.pair pre,.prompt{white-space:pre-wrap;background:#f6f7fb;padding:8px;border-radius:4px;margin:4px 0;
max-height:260px;overflow:auto}.status-fail,.status-regressed{color:#c62828;font-weight:600}
.status-pass,.status-gate{color:#1b873f;font-weight:600}.muted{color:#778}
"""
STYLESHEET = _CSS  # served as /console/report.css for the console's view


def _x(v: float, left: float, width: float) -> float:
    return left + (max(-1.0, min(1.0, v)) + 1) / 2 * width


def interval_chart(intervals: list[Interval]) -> str:
    """One row per category on [-1, 1]: the interval, the estimate, and the threshold line."""
    left, width, row = 140.0, 560.0, 26
    h = 30 + row * len(intervals)
    out = [f'<svg class="chart" width="{left + width + 40:.0f}" height="{h}" viewBox="0 0 {left + width + 40:.0f} '
           f'{h}" role="img" aria-label="estimates and intervals per category">']
    for t in (-1, -0.5, 0, 0.5, 1):
        x = _x(t, left, width)
        out.append(f'<line x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="{h - 6}" stroke="#e3e5ee"/>'
                   f'<text x="{x:.1f}" y="11" text-anchor="middle">{t:+g}</text>')
    for i, iv in enumerate(intervals):
        y = 30 + i * row
        bad = iv.status in ("fail", "regressed")
        color = "#c62828" if bad else "#1b873f" if iv.status in ("pass", "gate met") else "#8a6d00"
        tx = _x(-iv.threshold, left, width)
        out.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{escape(iv.category)} (n={iv.n})</text>'
                   f'<line x1="{tx:.1f}" y1="{y - 10}" x2="{tx:.1f}" y2="{y + 10}" stroke="#c62828" '
                   f'stroke-dasharray="3,2"/>'
                   f'<line x1="{_x(iv.lower, left, width):.1f}" y1="{y}" x2="{_x(iv.upper, left, width):.1f}" '
                   f'y2="{y}" stroke="{color}" stroke-width="4" stroke-linecap="round" opacity="0.55"/>'
                   f'<circle cx="{_x(iv.estimate, left, width):.1f}" cy="{y}" r="5" fill="{color}"/>')
    out.append("</svg>")
    return "".join(out)


def series_chart(category: str, pts: list[Point], threshold: float, marks: list[Mark]) -> str:
    """The estimate over time with its interval band, the threshold, and the stage changes."""
    w, h, left, top, bottom = 700.0, 190.0, 44.0, 14.0, 24.0
    if not pts:
        return ""
    t0 = min([pts[0].ts] + [m.ts for m in marks])
    t1 = max([pts[-1].ts] + [m.ts for m in marks] + [t0 + 1])

    def px(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (w - left - 10)

    def py(v: float) -> float:
        return top + (1 - (max(-1.0, min(1.0, v)) + 1) / 2) * (h - top - bottom)

    band = " ".join(f"{px(p.ts):.1f},{py(p.upper):.1f}" for p in pts) + " " + \
        " ".join(f"{px(p.ts):.1f},{py(p.lower):.1f}" for p in reversed(pts))
    line = " ".join(f"{px(p.ts):.1f},{py(p.estimate):.1f}" for p in pts)
    out = [f'<svg class="chart" width="{w:.0f}" height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}" role="img" '
           f'aria-label="{escape(category)} estimate over time">']
    for v in (-1, -0.5, 0, 0.5, 1):
        out.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{w - 10}" y2="{py(v):.1f}" stroke="#eef0f5"/>'
                   f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:+g}</text>')
    out.append(f'<polygon points="{band}" fill="#3f6fd8" opacity="0.18"/>'
               f'<polyline points="{line}" fill="none" stroke="#3f6fd8" stroke-width="2"/>'
               f'<line x1="{left}" y1="{py(-threshold):.1f}" x2="{w - 10}" y2="{py(-threshold):.1f}" stroke="#c62828" '
               f'stroke-dasharray="4,3"/><text x="{w - 12}" y="{py(-threshold) - 4:.1f}" text-anchor="end" '
               f'>-{threshold:g}</text>')
    for m in marks:
        x = px(m.ts)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{h - bottom}" stroke="#667" '
                   f'stroke-dasharray="2,3"/><text x="{x + 3:.1f}" y="{h - 8}">{escape(m.label)}</text>')
    out.append("</svg>")
    return "".join(out)


def html(r: Report, stylesheet: str | None = None) -> str:
    """A self-contained page (CSS embedded), or one that links `stylesheet` (no inline style at all)."""
    cls, word = ("pass", "PASS") if r.passed else ("fail", "FAIL") if r.passed is False else ("running", "RUNNING")
    css = f'<link rel="stylesheet" href="{escape(stylesheet)}">' if stylesheet else f"<style>{_CSS}</style>"
    p = [f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(r.title)}</title>{css}'
         f'</head><body><h1>{escape(r.title)}</h1><p><span class="verdict {cls}" id="verdict">{word}</span> '
         f'{escape(r.decision)}</p><dl class="facts">']
    p += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in r.facts]
    p.append("</dl><h2>Per category: estimate and interval against the threshold</h2>")
    p.append(interval_chart(r.intervals))
    p.append('<table id="numbers"><tr><th>category</th><th>pairs</th><th>W/T/L</th><th>estimate</th>'
             "<th>interval</th><th>threshold</th><th>status</th></tr>")
    for iv in r.intervals:
        status = iv.status.split()[0]
        p.append(f'<tr data-category="{escape(iv.category)}"><td>{escape(iv.category)}</td><td class="num">{iv.n}'
                 f'</td><td class="num">{iv.wins}/{iv.ties}/{iv.losses}</td><td class="num">{iv.estimate:+.3f}</td>'
                 f'<td class="num">[{iv.lower:+.3f}, {iv.upper:+.3f}]</td><td class="num">-{iv.threshold:g}</td>'
                 f'<td class="status-{escape(status)}">{escape(iv.status)}'
                 f'{" <span class=muted>(" + escape(iv.note) + ")</span>" if iv.note else ""}</td></tr>')
    p.append("</table>")
    if r.series:
        p.append("<h2>Estimate over time, with the stage changes</h2>")
        thresholds = {iv.category: iv.threshold for iv in r.intervals}
        for cat, pts in r.series.items():
            p.append(f"<h3>{escape(cat)}</h3>" + series_chart(cat, pts, thresholds.get(cat, 0.02), r.marks))
    if r.marks:
        p.append("<h2>Timeline</h2><table>")
        p += [f"<tr><td>{_when(m.ts)}</td><td>{escape(m.label)}</td><td>{escape(m.detail)}</td></tr>" for m in r.marks]
        p.append("</table>")
    if r.feedback:
        p.append("<h2>User feedback</h2><table><tr><th>category</th><th>arm</th><th>feedback</th><th>negative</th>"
                 "<th>regenerated</th></tr>")
        p += [f"<tr><td>{escape(f['category'])}</td><td>{escape(f['arm'])}</td><td class=num>{escape(f['feedback'])}"
              f"</td><td class=num>{escape(f['negative'])}</td><td class=num>{escape(f['regenerated'])}</td></tr>"
              for f in r.feedback]
        p.append("</table>")
    if r.examples:
        p.append("<h2>Worst regressed examples (redacted)</h2>")
        for e in r.examples:
            p.append(f'<section class="example"><h3>{escape(e.category)} / {escape(e.id)} '
                     f'<span class="muted">({escape(e.decided_by)})</span></h3>'
                     f'<div class="prompt">{escape(_clip(e.question))}</div><div class="pair">'
                     f"<div><b>stable</b><pre>{escape(_clip(e.stable_answer))}</pre></div>"
                     f"<div><b>candidate</b><pre>{escape(_clip(e.candidate_answer))}</pre></div></div>"
                     + (f'<p class="muted">judge: {escape(_clip(e.explanation, 500))}</p>' if e.explanation else "")
                     + "</section>")
    p.append("</body></html>")
    return "".join(p)
