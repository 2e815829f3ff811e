"""The run history: every run under the outputs root, indexed in SQLite, queried, counted and removed.

``folders`` reads run folders as they are on disk; ``run_index`` keeps the catalog file in step with
them; ``run_query`` and ``run_stats`` answer History and ``/api/v1/runs``; ``retention`` removes runs.
"""
