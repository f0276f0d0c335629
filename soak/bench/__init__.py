"""Benchmarks: the gateway against direct FunASR calls and against funasr-server, plus the harness's own costs.

``soak bench`` runs every section (or those named with ``--sections``) and
writes ``docs/benchmarks.md`` and the raw figures as JSON. Each figure is
measured in several rounds, and the order of the things compared
alternates from round to round. Every figure is reported as a median with
its spread, and as a ratio against a reference measured in the same rounds.
"""
