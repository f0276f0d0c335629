"""The incident's three leaks, kept apart from the fixed code so they can be switched back on.

Each module reproduces one leak with its original weight. They are never the
default: ``gateway serve --leaks ...`` selects them, and ``GET /v1/status``
lists which are on. The leaked data lives in module-level containers, as it
did in the incident's code, which is what the soak report's retention paths
point at.
"""
