"""Write an inspection report: inspection.json, class_distribution.png and a self-contained viewer page.

The page (index.html + thumbs/) needs no server and no network: open it from disk. Per split and class a grid of
sample thumbnails plus every flagged image; every problem in a table; a filter by problem kind. On load the page
counts images that failed to load and shows a banner if any did (the browser test reads the same attributes).
"""

from __future__ import annotations

import collections
import html
import json
import logging
import os

from .inspection import KINDS

logger = logging.getLogger(__name__)

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222}
h1{font-size:1.4em;margin:.8em 0 .2em} h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}
nav{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc;z-index:1}
.grid{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;width:164px;border:2px solid #eee;padding:2px;font-size:11px;overflow:hidden}
figure.flagged{border-color:#d33} figure img{width:160px;height:160px;object-fit:contain;background:#f4f4f4}
.ph{width:160px;height:160px;display:flex;align-items:center;justify-content:center;background:#fdd;color:#900}
.b{display:inline-block;border-radius:3px;padding:0 4px;margin:1px;color:#fff;font-size:10px}
.error{background:#c22}.warning{background:#d80}.info{background:#38c}
td img{height:64px;margin-right:2px} #broken{background:#fdd;padding:.5em;font-weight:bold}
.hidden{display:none}
"""

# Filter + self-check: data-kinds on tiles and rows; body data-* attributes say whether every thumbnail loaded.
_JS = """
const sel = document.getElementById('filter');
function apply() {
  const v = sel.value;
  document.querySelectorAll('[data-kinds]').forEach(el => {
    const kinds = el.dataset.kinds ? el.dataset.kinds.split(' ') : [];
    const show = v === 'all' || (v === 'flagged' ? kinds.length > 0 : kinds.includes(v));
    el.classList.toggle('hidden', !show);
  });
}
sel.addEventListener('change', apply);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0);
  document.body.dataset.images = imgs.length;
  document.body.dataset.brokenImages = broken.length;
  if (broken.length) {
    const b = document.getElementById('broken');
    b.textContent = broken.length + ' thumbnails failed to load: ' + broken.slice(0, 5).map(i => i.src).join(', ');
    b.hidden = false;
  }
  document.body.dataset.ready = '1';
});
"""


def write_report(report: dict, out_dir: str, *, samples_per_class: int = 24) -> dict[str, str]:
    """inspection.json, class_distribution.png, index.html in out_dir (thumbnails already in out_dir/thumbs)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("inspection.json", "class_distribution.png",
                                                             "index.html")}
    with open(paths["inspection.json"], "w") as f:
        json.dump(report, f, indent=1)
    plot_class_distribution(report, paths["class_distribution.png"])
    with open(paths["index.html"], "w", encoding="utf-8") as f:
        f.write(render_page(report, samples_per_class=samples_per_class))
    return paths


def plot_class_distribution(report: dict, path: str) -> None:
    """Horizontal bars: usable images per class, one bar per split (train, val, test side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = {s: sp for s, sp in report["splits"].items() if sp["labeled"]}
    names = report["summary"]["classes"] or ["(none)"]
    height = min(60.0, 1.5 + 0.28 * len(names) * max(1, len(splits)) ** 0.5)  # inches; readable up to ~200 classes
    fig, ax = plt.subplots(figsize=(8, height))
    bar = 0.8 / max(1, len(splits))
    for k, (split, sp) in enumerate(splits.items()):
        counts = [sp["classes"].get(n, {}).get("usable", 0) for n in names]
        ys = [i + k * bar for i in range(len(names))]
        ax.barh(ys, counts, height=bar, label=f"{split} ({sum(counts)})")
        for y, c in zip(ys, counts):
            ax.text(c, y, f" {c}", va="center", fontsize=7)
    ax.set_yticks([i + bar * (len(splits) - 1) / 2 for i in range(len(names))], names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("usable images")
    ax.set_title("images per class", loc="right", fontsize=10)
    if splits:
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.02), ncol=len(splits), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _badges(kinds) -> str:
    return "".join(f'<span class="b {KINDS[k][0]}" title="{html.escape(KINDS[k][1])}">{k}</span>'
                   for k in sorted(kinds))


def render_page(report: dict, *, samples_per_class: int = 24) -> str:
    e = html.escape
    s = report["summary"]
    records = {r["rel"]: r for r in report["files"]}
    kinds_of = collections.defaultdict(set)  # file -> every problem kind it takes part in (duplicates included)
    for p in report["problems"]:
        for f in p["files"]:
            kinds_of[f].add(p["kind"])

    def thumb(rel: str, size_class: str = "") -> str:
        r = records.get(rel)
        if r and r["thumb"]:
            return f'<img src="thumbs/{e(r["thumb"])}" alt="{e(rel)}" title="{e(rel)}"{size_class}>'
        return ""

    out = ['<!doctype html><html><head><meta charset="utf-8">',
           f'<title>inspection: {e(os.path.basename(report["root"]))}</title><style>{_CSS}</style></head>',
           '<body data-ready="0">', f'<h1>{e(report["root"])}</h1>',
           f'<p>{s["files"]} files, {s["usable"]} usable, {len(s["classes"])} classes, {s["bytes"] / 1e6:.1f} MB; '
           f'{s["errors"]} errors, {s["warnings"]} warnings, {s["info"]} info; inspected in {s["seconds"]} s.</p>',
           '<div id="broken" hidden></div>']
    counts = s["problem_counts"]
    options = [f'<option value="all">all images</option>', f'<option value="flagged">flagged only</option>']
    options += [f'<option value="{k}">{k} ({n})</option>' for k, n in counts.items()]
    out.append(f'<nav>Show: <select id="filter">{"".join(options)}</select> '
               + " ".join(f'<span class="b {KINDS[k][0]}">{k} {n}</span>' for k, n in counts.items()) + '</nav>')

    # Splits overview and the class chart
    out.append('<h2>Splits</h2><table><tr><th>split</th><th>files</th><th>usable</th><th>classes</th>'
               '<th>median size</th><th>aspect (min-max)</th><th>modes</th><th>formats</th></tr>')
    for split, sp in report["splits"].items():
        size = f'{sp["width"]["median"]:.0f}x{sp["height"]["median"]:.0f}' if sp["width"] else "-"
        aspect = f'{sp["aspect"]["min"]:.2f}-{sp["aspect"]["max"]:.2f}' if sp["aspect"] else "-"
        out.append(f'<tr><td>{e(split)}</td><td>{sp["files"]}</td><td>{sp["usable"]}</td>'
                   f'<td>{len([c for c in sp["classes"] if c])}</td><td>{size}</td><td>{aspect}</td>'
                   f'<td>{e(", ".join(f"{m} {n}" for m, n in sp["modes"].items()))}</td>'
                   f'<td>{e(", ".join(f"{m} {n}" for m, n in sp["formats"].items()))}</td></tr>')
    out.append('</table><img src="class_distribution.png" alt="images per class" style="max-width:100%">')

    # Every problem, filterable
    out.append(f'<h2>Problems ({len(report["problems"])})</h2>')
    if report["problems"]:
        out.append('<table><tr><th>severity</th><th>kind</th><th>where</th><th>files</th><th>detail</th></tr>')
        for p in report["problems"]:
            where = "/".join(x for x in (p["split"], p["label"]) if x)
            files = "<br>".join(thumb(f) + e(f) for f in p["files"][:20])
            more = f'<br>... {len(p["files"]) - 20} more' if len(p["files"]) > 20 else ""
            out.append(f'<tr data-kinds="{p["kind"]}"><td><span class="b {p["severity"]}">{p["severity"]}</span>'
                       f'</td><td>{p["kind"]}</td><td>{e(where)}</td><td>{files}{more}</td>'
                       f'<td>{e(p["detail"])}</td></tr>')
        out.append('</table>')
    else:
        out.append('<p>No problems found.</p>')

    # Per split and class: samples + every flagged file
    by_class = collections.defaultdict(list)
    for r in report["files"]:
        by_class[(r["split"], r["label"] or "")].append(r)
    for split, sp in report["splits"].items():
        out.append(f'<h2>{e(split)}{"" if sp["labeled"] else " (unlabeled)"}</h2>')
        for name, c in sp["classes"].items():
            recs = by_class[(split, name)]
            shown = [r for r in recs if r["thumb"] or kinds_of[r["rel"]]]
            out.append(f'<section class="class" data-split="{e(split)}" data-class="{e(name)}">'
                       f'<h3>{e(name or "(flat)")}: {c["usable"]} usable of {c["files"]} files'
                       f'{" - no images" if not recs else ""}</h3><div class="grid">')
            for r in shown:
                kinds = sorted(kinds_of[r["rel"]])
                img = thumb(r["rel"]) or f'<div class="ph">{e(", ".join(kinds) or "no preview")}</div>'
                size = f'{r["width"]}x{r["height"]} {r["mode"]}' if r["width"] else (r["mode"] or "")
                out.append(f'<figure class="{"flagged" if kinds else ""}" data-kinds="{" ".join(kinds)}">{img}'
                           f'<figcaption>{e(r["rel"].rsplit("/", 1)[-1])}<br>{e(size)} {_badges(kinds)}'
                           f'</figcaption></figure>')
            out.append('</div></section>')
    out.append(f'<script>{_JS}</script></body></html>')
    return "\n".join(out)
