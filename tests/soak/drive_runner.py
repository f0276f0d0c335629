"""Run ``soak.runner.run_once`` in its own process, as ``soak run`` would, for signal tests.

Usage: ``python drive_runner.py OUT_DIR SETTINGS_JSON``. Exits like the CLI:
the run's exit status, or 2 when interrupted.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from soak.runner import run_once
from soak.settings import RunSettings

PATH_FIELDS = {"models_dir", "criteria_path", "audio_path"}


def settings_from_json(text: str) -> RunSettings:
    values = json.loads(text)
    for field in fields(RunSettings):
        if field.name in values and field.name in PATH_FIELDS and values[field.name] is not None:
            values[field.name] = Path(values[field.name])
        elif field.name in values and isinstance(values[field.name], list):
            values[field.name] = tuple(values[field.name])
    return RunSettings(**values)


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = settings_from_json(sys.argv[2])
    try:
        _, result = run_once(settings, out=Path(sys.argv[1]))
    except KeyboardInterrupt:
        return 2
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
