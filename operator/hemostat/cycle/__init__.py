"""One evaluation cycle of one policy, in rooms: read.py (I/O in) -> plan.py (pure) -> apply.py (I/O out),
wired by evaluator.py; manual.py for Incidents people declare, queries.py for the capped signal reads.

This package module imports nothing, so importing the pure planner imports no I/O library.
"""
