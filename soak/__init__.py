"""Soak harness: start a gateway, drive it with Locust, sample it and judge the run."""

__version__ = "0.1.0"
