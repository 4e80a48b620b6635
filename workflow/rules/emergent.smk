# (filled by the emergent stage)
