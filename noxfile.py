"""nox sessions: ``tests`` (pytest), ``soak`` (the CI gate: every profile, plus the leaky memory reference) and ``bench``.

Both use nox's default backend, virtualenv + pip, never uv: pip here reads a
local wheel store that has the CPU build of torch 2.13.0, while uv would
download a multi-GB CUDA build. Both sessions install the same way, so pip
reuses its wheel cache between them.
"""

from __future__ import annotations

import shutil

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["tests"]

# The project is tested on Python 3.11; other interpreters (3.10 or newer) work where 3.11 is absent.
PYTHON = "3.11" if shutil.which("python3.11") else None
INSTALL_ARGS = ("-c", "constraints.txt", "-e", ".[dev]")

# Exit status of `soak gate` when a part could not be carried out.
SOAK_EXIT_NOT_CARRIED_OUT = 2


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run pytest; soak-scale tests (marker "soak") are excluded unless posargs select them."""
    session.install(*INSTALL_ARGS)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """Run the CI gate: every profile against the fixed gateway, and the memory profile's leaky reference.

    It passes only when every fixed run passes and the leaky reference fails.
    posargs go to ``soak gate``, for example ``-- --profiles memory,workers`` or ``-- --compress 60``.
    """
    session.install(*INSTALL_ARGS)
    session.run("gateway", "models", "prepare", "--size", "50mb", "--copies", "4")
    try:
        session.run("soak", "gate", *session.posargs)
    except nox.command.CommandFailed as failure:
        # nox ends a failed session with status 1. A part that could not be
        # carried out exits 2 instead, so that CI can tell a broken setup from
        # a failed criterion. SystemExit ends nox at once, without its summary.
        if failure.return_code == SOAK_EXIT_NOT_CARRIED_OUT:
            session.log("soak gate could not carry out a part (exit status 2); nox exits with status 2.")
            raise SystemExit(SOAK_EXIT_NOT_CARRIED_OUT) from None
        raise


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks and write docs/benchmarks.md and docs/benchmarks.json (about 12 minutes on 2 cores).

    posargs go to ``soak bench``, for example ``-- --sections throughput --rounds 3``.
    """
    session.install(*INSTALL_ARGS)
    session.run("gateway", "models", "prepare", "--size", "50mb", "--copies", "4")
    session.run("soak", "bench", *session.posargs)
