"""The report: our numbers against the post's published ones, and where every result came from.

Reads the weights, dataset and experiment tables; writes `paper_check.parquet` and its HTML page, and the manifest
page (workflow/rules/report.smk)."""
