"""Distribution drift of feature values: the population stability index (PSI), per feature.

``PSI = sum over bins of (c - r) * ln(c / r)``, with ``r`` and ``c`` the share of reference
and current values in each bin. Numeric features are binned at the reference's quantiles
(deciles by default, duplicate edges merged, open-ended first and last bins); text and
boolean features by value, the reference's most frequent values each a bin and the rest
"other". An empty bin counts as ``EPSILON`` so the logarithm stays finite. Nulls are left
out (their share is reported). Reading: below 0.1 stable, 0.1 to 0.25 investigate, above 0.25
drift.

The HTML report is one self-contained file with an inline SVG bar chart per feature
(reference vs current share per bin): written here rather than with a plotting library
because a few rectangles per feature do not justify a large dependency, and the file must
open anywhere without scripts or network.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

EPSILON = 1e-4
STABLE_BELOW = 0.1
DRIFT_ABOVE = 0.25


@dataclass
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    psi: float
    bins: list[str]
    reference_share: list[float]
    current_share: list[float]
    reference_n: int
    current_n: int
    reference_nulls: int = 0
    current_nulls: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict(self.psi)

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "psi": round(self.psi, 6), "verdict": self.verdict,
                "reference_n": self.reference_n, "current_n": self.current_n,
                "reference_nulls": self.reference_nulls, "current_nulls": self.current_nulls,
                "bins": self.bins, "reference_share": [round(x, 6) for x in self.reference_share],
                "current_share": [round(x, 6) for x in self.current_share], "notes": self.notes}


def verdict(psi: float) -> str:
    if psi < STABLE_BELOW:
        return "stable"
    return "investigate" if psi <= DRIFT_ABOVE else "drift"


def psi_from_shares(reference: Sequence[float], current: Sequence[float]) -> float:
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        r, c = max(r, EPSILON), max(c, EPSILON)
        total += (c - r) * math.log(c / r)
    return total


def quantile_edges(values: Sequence[float], bins: int) -> list[float]:
    """Upper bin edges: bins are (-inf, e0], (e0, e1], ..., (e_last, inf). With at most ``bins`` distinct
    reference values, one edge per value (a constant or zero-inflated feature still splits at its values);
    otherwise the reference's quantiles (nearest rank) from its minimum to its maximum."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return []
    distinct = sorted(set(ordered))
    if len(distinct) <= bins:
        return distinct
    return sorted({ordered[min(n - 1, (n * k) // bins)] for k in range(bins)} | {ordered[-1]})


def _bin_numeric(values: Sequence[float], edges: list[float]) -> list[int]:
    from bisect import bisect_left

    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[bisect_left(edges, v)] += 1
    return counts


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def feature_drift(feature: str, reference: Sequence[Any], current: Sequence[Any], *, bins: int = 10,
                  categories: int = 20) -> FeatureDrift:
    """PSI of one feature between two samples of its values (nulls left out and counted)."""
    if bins < 2 or categories < 1:
        raise ValueError(f"bins {bins} / categories {categories} out of range: bins at least 2, categories at least 1")
    ref = [v for v in reference if v is not None and not (isinstance(v, float) and math.isnan(v))]
    cur = [v for v in current if v is not None and not (isinstance(v, float) and math.isnan(v))]
    nulls = (len(reference) - len(ref), len(current) - len(cur))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in [*ref, *cur])
    notes = []
    if not ref or not cur:
        notes.append("no reference values" if not ref else "no current values")
        return FeatureDrift(feature, "numeric" if numeric else "categorical", 0.0, [], [], [], len(ref), len(cur),
                            *nulls, notes=notes)
    if numeric:
        edges = quantile_edges([float(v) for v in ref], bins)
        labels = _numeric_labels(edges)
        ref_share = _shares(_bin_numeric([float(v) for v in ref], edges))
        cur_share = _shares(_bin_numeric([float(v) for v in cur], edges))
        kind = "numeric"
        if len(set(ref)) <= bins:
            notes.append(f"binned by value: the reference has {len(set(ref))} distinct value(s)")
    else:
        top = [value for value, _n in Counter(str(v) for v in ref).most_common(categories)]
        index = {value: i for i, value in enumerate(top)}
        other = len(top)

        def counts(values: Sequence[Any]) -> list[int]:
            out = [0] * (len(top) + 1)
            for v in values:
                out[index.get(str(v), other)] += 1
            return out

        labels = [*top, "other"]
        ref_share, cur_share = _shares(counts(ref)), _shares(counts(cur))
        kind = "categorical"
    return FeatureDrift(feature, kind, psi_from_shares(ref_share, cur_share), labels, ref_share, cur_share,
                        len(ref), len(cur), *nulls, notes=notes)


def _numeric_labels(edges: list[float]) -> list[str]:
    points = [f"{e:.4g}" for e in edges]
    return [f"<= {points[0]}", *(f"{a} to {b}" for a, b in zip(points, points[1:], strict=False)), f"> {points[-1]}"]


# --- the HTML report -----------------------------------------------------------

_COLOURS = {"stable": "#2e7d32", "investigate": "#ef6c00", "drift": "#c62828"}


def _chart(d: FeatureDrift, width: int = 640, height: int = 180) -> str:
    n = len(d.bins)
    if not n:
        return "<p>(no values to compare)</p>"
    top = max([*d.reference_share, *d.current_share, 0.01])
    slot = (width - 40) / n
    bar = max(2.0, slot * 0.38)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 80}" role="img" '
             f'aria-label="{html.escape(d.feature)}: reference and current share per bin">']
    for i, (label, r, c) in enumerate(zip(d.bins, d.reference_share, d.current_share, strict=True)):
        x = 30 + i * slot
        for j, (share, colour) in enumerate(((r, "#90a4ae"), (c, "#1565c0"))):
            h = share / top * (height - 10)
            parts.append(f'<rect x="{x + j * bar:.1f}" y="{height - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{html.escape(label)}: {"reference" if j == 0 else "current"} '
                         f'{share:.1%}</title></rect>')
        if n <= 12 or i % max(1, n // 12) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 12}" font-size="9" fill="#444" '
                         f'transform="rotate(30 {x:.1f} {height + 12})">{html.escape(label[:18])}</text>')
    parts.append(f'<line x1="28" y1="{height}" x2="{width - 8}" y2="{height}" stroke="#999"/>')
    parts.append(f'<text x="30" y="{height + 70}" font-size="11" fill="#90a4ae">&#9632; reference</text>'
                 f'<text x="120" y="{height + 70}" font-size="11" fill="#1565c0">&#9632; current</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(title: str, subtitle: str, drifts: list[FeatureDrift]) -> str:
    rows = "".join(
        f'<tr><td>{html.escape(d.feature)}</td><td>{d.kind}</td><td class="num">{d.psi:.4f}</td>'
        f'<td style="color:{_COLOURS[d.verdict]};font-weight:bold">{d.verdict}</td>'
        f'<td class="num">{d.reference_n:,}</td><td class="num">{d.current_n:,}</td></tr>' for d in drifts)
    sections = "".join(
        f'<section><h2>{html.escape(d.feature)} <span style="color:{_COLOURS[d.verdict]}">PSI {d.psi:.4f} '
        f"({d.verdict})</span></h2>{_chart(d)}"
        + (f"<p class=note>{html.escape('; '.join(d.notes))}</p>" if d.notes else "")
        + f"<p class=note>nulls: reference {d.reference_nulls:,}, current {d.current_nulls:,}</p></section>"
        for d in drifts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:760px}}
table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}
.num{{text-align:right}}.note{{color:#666;font-size:90%}}h2{{font-size:1.1em;margin-top:2em}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>
<p class=note>PSI below {STABLE_BELOW} stable, {STABLE_BELOW} to {DRIFT_ABOVE} investigate, above
{DRIFT_ABOVE} drift.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>verdict</th><th>reference n</th><th>current n</th></tr>
{rows}</table>{sections}</body></html>
"""
