"""A FunASR transcription gateway with its historical leaks fixed.

Each leak can be switched back on (``--leaks``) so that the fixed and the
leaky behaviour run from one code base on one model.
"""

__version__ = "0.1.0"
