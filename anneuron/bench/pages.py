"""How fast a built neuron site opens, from disk, in headless Chromium (the pages' "< 1 s per neuron view"):

    python -m anneuron.bench pages results/rehearsal-gpt2-large/pages [--neurons 12] [--seed 0]

Each view is opened as a new page load (the tab goes to about:blank first, so no script or data of the site stays
loaded; the OS file cache stays warm, as it would for a reader clicking through) by its file:// URL: the wall time
from navigation to the view being rendered (`window.ANNEURON.ready`), and the app's own render time (route to
done, data loading included). Neurons are drawn at random over all layers; the index (the "all layers" table) and
a token view are timed too. GPT-2 Large's shape is the rehearsal's site (`make rehearsal`). ONE JSON object on the
last line.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from pathlib import Path

from anneuron.bench.common import emit


def _meta(site: Path) -> dict:
    text = (site / "data" / "meta.js").read_text(encoding="utf-8")
    return json.loads(re.search(r"=(\{.*\});\s*$", text, re.S).group(1))


def _open(driver, url: str) -> tuple[float, float, str]:
    """(wall s, the app's render ms, view) of one cold open of `url`."""
    from anneuron.devtools.browser import wait_ready

    driver.get("about:blank")
    t = time.perf_counter()
    driver.get(url)
    view = wait_ready(driver, timeout=60)
    wall = time.perf_counter() - t
    return wall, float(driver.execute_script("return window.ANNEURON.renderMs")), view


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="open times of a built neuron site, from disk")
    ap.add_argument("site", help="a pages folder (results/{model}/pages)")
    ap.add_argument("--neurons", type=int, default=12, help="random neuron views to open")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from anneuron.devtools.browser import chromium

    site = Path(args.site).resolve()
    meta = _meta(site)
    rng = random.Random(args.seed)
    picks = [(rng.randrange(meta["n_layers"]), rng.randrange(meta["d_mlp"])) for _ in range(args.neurons)]
    index = (site / "index.html").as_uri()
    with chromium() as d:
        idx_wall, idx_ms, _ = _open(d, index)
        walls, renders = [], []
        for layer, neuron in picks:
            wall, ms, view = _open(d, f"{index}#L{layer}N{neuron}")
            assert view == "neuron", f"L{layer}N{neuron}: the page shows {view}"
            walls.append(wall)
            renders.append(ms)
        tok_wall, tok_ms, _ = _open(d, f"{index}#tid=281")
        errors = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    paths = [p for p in site.rglob("*") if p.is_file()]
    size, files = sum(p.stat().st_size for p in paths), len(paths)
    print(f"{meta['model']}: {meta['n_layers']} × {meta['d_mlp']} neurons; {files:,} files, {size / 2**30:.2f} GB")
    print(f"neuron views (new page loads, from disk): median {statistics.median(walls):.2f} s, max {max(walls):.2f} s "
          f"(app render median {statistics.median(renders):.0f} ms)")
    print(f"index: {idx_wall:.2f} s; token view: {tok_wall:.2f} s")
    emit(dict(model=meta["model"], neurons=meta["n_layers"] * meta["d_mlp"], site_gb=round(size / 2**30, 3),
              files=files, views=len(walls), view_median_s=round(statistics.median(walls), 3),
              view_max_s=round(max(walls), 3), render_median_ms=round(statistics.median(renders), 1),
              index_s=round(idx_wall, 3), index_render_ms=round(idx_ms, 1), token_view_s=round(tok_wall, 3),
              token_render_ms=round(tok_ms, 1), under_1s=max(walls) < 1.0, console_errors=len(errors)))


if __name__ == "__main__":
    main()
