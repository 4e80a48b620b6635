"""Benchmarks: `python -m anneuron.bench NAME [options]`. Each prints ONE JSON object on its last line, with its
figures measured as ratios in the same run where a ratio exists (this shared machine's raw speed drifts); `serve`
and `pages` report latencies, against the targets the README states."""

BENCHES = ("congruence", "record", "patching", "rehearsal", "serve", "pages", "tasks", "universality", "stages")
