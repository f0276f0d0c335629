"""Exception tree of the soak harness.

Every error that the harness reports to its user derives from ``SoakError``,
so that an entry point can catch them in one place and map them to an exit
status.
"""

from __future__ import annotations


class SoakError(Exception):
    """Base class of the errors that the soak harness reports to its user."""
