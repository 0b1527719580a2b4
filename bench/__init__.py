"""The benchmark: what durability costs per agent turn, against plain ADK, measured side by side.

Scripts, not tests: `make bench` (`python bench/run.py`) writes bench/results/latest.json,
the table in docs/PERFORMANCE.md and the plots in docs/img/.
"""
