"""Locust profiles that drive the gateway. Locust loads each module with ``locust -f``."""
