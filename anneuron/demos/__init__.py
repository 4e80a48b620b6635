"""The demo models and corpora: planted (ground truth by construction), emergent (trained here), real (SmolLM2
from pinned packages) and tiny models of every decoder family for tests.

Reads nothing but its config (and the pinned wheels, for the real demo); writes model folders and corpora under
`resources/` (workflow/rules/{demo,emergent,real_demo}.smk)."""
