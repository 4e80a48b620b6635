"""Benchmarks: `python -m anneuron.bench NAME [options]`. Each prints ONE JSON object on its last line, with its
figures measured as ratios in the same run (this shared machine's raw speed drifts)."""

BENCHES = ("congruence", "record", "patching", "rehearsal", "serve", "pages")
