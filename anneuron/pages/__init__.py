"""The neuron pages: a static site, `results/{model}/pages/index.html`, to browse every neuron like Neuroscope.

It works opened straight from disk (file://: no server, no network, no CDN) and served by any static web server.
Python (anneuron.pages.build) writes the data as small JavaScript files that each assign one shard to a global
(`ANNEURON_DATA["neurons/L2/13"] = {...}`); the page (anneuron/pages/static: HTML, CSS and vanilla JavaScript, no
build step) loads a shard by adding a <script> tag when it needs it, since a file:// page cannot fetch() JSON in
Chromium. One neuron's view loads one shard of `SHARD_NEURONS` neurons of its layer.

Layout of the site (docs/contracts.md):

    index.html                     the only page; views by fragment: #L{layer}N{neuron}, #token=<text>, #tid=<id>
    assets/app.js, assets/style.css
    data/meta.js                   the model, experiments, top pairs, watched neurons, standouts, class counts
    data/vocab.js                  every token's string (token search)
    data/index/L{l}.js             per layer, one compact row per neuron (the index's filters and sorting)
    data/neurons/L{l}/{part}.js    per layer, SHARD_NEURONS neurons' full records (neuron view)
    data/tokens/{part}.js          per TOKEN_SHARD token ids: their top neurons, both directions, and counts
"""

from anneuron.pages.build import SHARD_NEURONS, TOKEN_SHARD, Sources, build_site

__all__ = ["SHARD_NEURONS", "TOKEN_SHARD", "Sources", "build_site"]
