# (filled by the report stage)
