"""Exit criteria of soak runs, loaded from TOML files.

The defaults, with the reason for each value, are in criteria_default.toml
next to this module. A user file overrides any of its keys, and a
``[profiles.NAME]`` table overrides them for one profile. Precedence, lowest
first: the defaults' top level, the defaults' profile table, the user file's
top level, the user file's profile table. docs/leak-verdict.md describes the
keys.
"""

from __future__ import annotations

import decimal
import difflib
import math
import numbers
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from soak.errors import SoakError
from soak.trend import DEFAULT_MAX_POINTS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_CRITERIA_PATH = Path(__file__).with_name("criteria_default.toml")

# Profiles that may have a [profiles.NAME] table.
KNOWN_PROFILES = ("memory", "workers", "sessions", "soak", "patterns")

SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
# Units match without regard to case, so "mib" and "MIB" are MiB.
_UNITS_BY_LOWER_NAME = {name.lower(): factor for name, factor in SIZE_UNITS.items()}

# Sizes must fit a signed 64-bit integer, the range of TOML's own integers.
MAX_SIZE_BYTES = 2**63 - 1

# Criteria files have a few dozen lines, so anything larger is the wrong file.
MAX_CRITERIA_FILE_BYTES = 1024 * 1024

_MAX_SIZE_TEXT_CHARS = 64
_MAX_SHOWN_VALUE_CHARS = 60

_SIZE_PATTERN = re.compile(
    r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<exponent>[eE][+-]?[0-9]+)?\s*(?P<unit>[A-Za-z]*)"
)

_SIZE_HELP = (
    'Write a whole number of bytes or a string such as "500 MB" or "1.5 GiB". Units are '
    "B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024)."
)

# The leak verdict bins longer series down to this many points, and needs at
# least min_points of them.
_MAX_LEAK_MIN_POINTS = DEFAULT_MAX_POINTS


class CriteriaError(SoakError):
    """An invalid criteria file or value.

    ``key`` is the dotted TOML key (``profiles.soak.soak_growth_bytes``) and
    ``value`` the value found, both None when the error concerns the whole file.
    """

    def __init__(self, message: str, *, key: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


@dataclass(frozen=True)
class Criteria:
    """Exit criteria of one profile's runs, after defaults and overrides are merged."""

    profile: str
    # RSS limit after the memory profile: base + (cache bound + this) x model size.
    rss_after_profile_extra_models: float
    # Maximum RSS growth per request once the cache is full, as a fraction of one model instance.
    growth_per_request_fraction_of_model: float
    worker_recovery_s: float
    # Slowest answer allowed to a status call made while the worker pool is saturated.
    status_call_limit_s: float
    # Seconds allowed beyond session TTL + sweep interval for sessions to reach 0.
    session_cleanup_grace_s: float
    soak_growth_bytes: int
    max_timeout_rate_percent: float
    thread_and_file_counts_return: bool
    thread_and_file_count_tolerance: int
    min_leak_rate_bytes_per_hour: int
    leak_alpha: float
    leak_min_points: int
    fail_on_inconclusive_leak_verdict: bool
    # The user's criteria file, None when only the defaults apply.
    source_path: Path | None = None

    @property
    def min_leak_rate_bytes_per_s(self) -> float:
        """Minimum leak rate for a series whose x axis is in seconds."""
        return self.min_leak_rate_bytes_per_hour / 3600.0

    def rss_limit_bytes(self, base_bytes: float, model_bytes: float, cache_bound: int) -> int:
        """Compute base + (cache_bound + rss_after_profile_extra_models) x model_bytes, rounded to a byte."""
        _require_finite("base_bytes", base_bytes)
        _require_finite("model_bytes", model_bytes)
        if model_bytes < 0:
            raise ValueError(f"model_bytes must be >= 0, got {model_bytes!r}")
        if not _is_integer(cache_bound) or cache_bound < 1:
            raise ValueError(f"cache_bound must be an integer >= 1, got {cache_bound!r}")

        return round(base_bytes + (cache_bound + self.rss_after_profile_extra_models) * model_bytes)

    def min_growth_per_request_bytes(self, model_bytes: float) -> float:
        """Return the leak threshold in bytes per request for a model instance of ``model_bytes``."""
        _require_finite("model_bytes", model_bytes)
        if model_bytes < 0:
            raise ValueError(f"model_bytes must be >= 0, got {model_bytes!r}")
        return self.growth_per_request_fraction_of_model * model_bytes

    def session_cleanup_deadline_s(self, ttl_s: float, sweep_interval_s: float) -> float:
        """Return the seconds after the last activity by which sessions must be gone."""
        for name, value in (("ttl_s", ttl_s), ("sweep_interval_s", sweep_interval_s)):
            _require_finite(name, value)
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        return ttl_s + sweep_interval_s + self.session_cleanup_grace_s

    def to_dict(self) -> dict[str, Any]:
        """Return the criteria as a JSON-serialisable dict, for the manifest and summary."""
        data = asdict(self)
        data["source_path"] = None if self.source_path is None else str(self.source_path)
        return data


# --- value types --------------------------------------------------------------------

_Kind = Literal["size", "seconds", "number", "integer", "bool"]


@dataclass(frozen=True)
class _Field:
    kind: _Kind
    minimum: float | None = None
    maximum: float | None = None
    # True when the value must differ from minimum or maximum.
    exclusive: bool = False


_FIELDS: dict[str, _Field] = {
    "rss_after_profile_extra_models": _Field("number", minimum=0.0),
    "growth_per_request_fraction_of_model": _Field("number", minimum=0.0, maximum=1.0),
    "worker_recovery_s": _Field("seconds", minimum=0.0, exclusive=True),
    "status_call_limit_s": _Field("seconds", minimum=0.0, exclusive=True),
    "session_cleanup_grace_s": _Field("seconds", minimum=0.0),
    "soak_growth_bytes": _Field("size"),
    "max_timeout_rate_percent": _Field("number", minimum=0.0, maximum=100.0),
    "thread_and_file_counts_return": _Field("bool"),
    "thread_and_file_count_tolerance": _Field("integer", minimum=0),
    "min_leak_rate_bytes_per_hour": _Field("size"),
    "leak_alpha": _Field("number", minimum=0.0, maximum=0.5, exclusive=True),
    "leak_min_points": _Field("integer", minimum=3, maximum=_MAX_LEAK_MIN_POINTS),
    "fail_on_inconclusive_leak_verdict": _Field("bool"),
}


def parse_size(value: object, *, key: str = "size", origin: str | None = None) -> int:
    """Parse a size given as whole bytes or as a string with a unit, such as "1.5 GiB".

    Fractions of a byte round to the nearest byte. Raises CriteriaError, naming
    ``key`` and ``origin``, for negative, non-numeric, unparsable or oversized values.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _invalid(key, value, origin, f"a size must be an integer or a string, not {_type_name(value)}", _SIZE_HELP)

    if isinstance(value, int):
        if value < 0:
            raise _invalid(key, value, origin, "a size must not be negative", _SIZE_HELP)
        if value > MAX_SIZE_BYTES:
            raise _invalid(key, value, origin, f"a size must be at most {MAX_SIZE_BYTES} bytes (8 EiB)", _SIZE_HELP)
        return value

    text = value.strip()
    if not text:
        raise _invalid(key, value, origin, "a size must not be empty", _SIZE_HELP)
    if len(text) > _MAX_SIZE_TEXT_CHARS:
        raise _invalid(key, value, origin, f"a size must be at most {_MAX_SIZE_TEXT_CHARS} characters long", _SIZE_HELP)
    if text.startswith("-"):
        raise _invalid(key, value, origin, "a size must not be negative", _SIZE_HELP)

    match = _SIZE_PATTERN.fullmatch(text)
    if match is None:
        raise _invalid(key, value, origin, "it is not a number followed by an optional unit", _SIZE_HELP)
    unit = match["unit"] or "B"
    factor = _UNITS_BY_LOWER_NAME.get(unit.lower())
    if factor is None:
        raise _invalid(key, value, origin, f"{unit!r} is not a size unit", _SIZE_HELP)

    # Decimal keeps "1.5 GiB" exact and turns "1e400 GB" into a large number
    # instead of float infinity. 80 digits hold any 64-character input.
    with decimal.localcontext() as context:
        context.prec = 80
        try:
            number = decimal.Decimal(match["number"] + (match["exponent"] or ""))
            # Check the exponent first, so that "1e999999999 GB" is rejected
            # before the multiplication can overflow.
            too_large = number.adjusted() > 30 or number * factor > MAX_SIZE_BYTES
        except decimal.DecimalException:
            too_large = True
        if too_large:
            raise _invalid(key, value, origin, f"a size must be at most {MAX_SIZE_BYTES} bytes (8 EiB)", _SIZE_HELP)
        return int((number * factor).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def _parse_value(key: str, field: _Field, value: object, origin: str) -> object:
    if field.kind == "size":
        return parse_size(value, key=key, origin=origin)

    if field.kind == "bool":
        if not isinstance(value, bool):
            raise _invalid(key, value, origin, f"it must be a boolean, not {_type_name(value)}", "Write true or false.")
        return value

    help_text = _range_help(field)
    if field.kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(key, value, origin, f"it must be an integer, not {_type_name(value)}", help_text)
        if not _in_range(value, field):
            raise _invalid(key, value, origin, "it is out of range", help_text)
        return value

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(key, value, origin, f"it must be a number, not {_type_name(value)}", help_text)
    number = float(value)
    if not math.isfinite(number):
        raise _invalid(key, value, origin, "it must be a finite number", help_text)
    if not _in_range(number, field):
        raise _invalid(key, value, origin, "it is out of range", help_text)
    return number


def _in_range(number: float, field: _Field) -> bool:
    if field.minimum is not None:
        if number < field.minimum or (field.exclusive and number == field.minimum):
            return False
    if field.maximum is not None:
        if number > field.maximum or (field.exclusive and number == field.maximum):
            return False
    return True


def _range_help(field: _Field) -> str:
    noun = {"seconds": "a number of seconds", "integer": "an integer", "number": "a number"}[field.kind]
    low, high = field.minimum, field.maximum
    if low is not None and high is not None:
        if field.exclusive:
            return f"Write {noun} greater than {low:g} and less than {high:g}."
        return f"Write {noun} from {low:g} to {high:g}."
    if low is not None:
        if field.exclusive:
            return f"Write {noun} greater than {low:g}."
        return f"Write {noun} that is at least {low:g}."
    return f"Write {noun}."


# --- loading -------------------------------------------------------------------------


def load_criteria(path: Path | str | None, profile: str) -> Criteria:
    """Load the criteria of ``profile``: the defaults, overridden by the file at ``path`` if given.

    Raises CriteriaError for an unreadable file, invalid TOML, an unknown key
    or profile table, or a value of the wrong type or range. Every profile
    table in the file is checked, not only the one of ``profile``.
    """
    if profile not in KNOWN_PROFILES:
        raise CriteriaError(
            f"Unknown profile {profile!r} for the criteria. Use one of {', '.join(KNOWN_PROFILES)}.",
            key="profile",
            value=profile,
        )

    default_origin = f"the built-in criteria {DEFAULT_CRITERIA_PATH}"
    default_top, default_profiles = _parse_document(_read_toml(DEFAULT_CRITERIA_PATH), default_origin)
    missing = [name for name in _FIELDS if name not in default_top]
    if missing:
        raise CriteriaError(
            f"The built-in criteria file {DEFAULT_CRITERIA_PATH} is missing {', '.join(missing)}. "
            "The installation is damaged, so reinstall the package."
        )

    merged = {**default_top, **default_profiles.get(profile, {})}
    source_path = None
    if path is not None:
        source_path = Path(path)
        user_top, user_profiles = _parse_document(_read_toml(source_path), str(source_path))
        merged.update(user_top)
        merged.update(user_profiles.get(profile, {}))

    return Criteria(profile=profile, source_path=source_path, **merged)  # type: ignore[arg-type]


def _read_toml(path: Path) -> dict[str, Any]:
    fix = "Pass an existing criteria file, or leave the option out to use the built-in defaults."
    try:
        with path.open("rb") as file:
            content = file.read(MAX_CRITERIA_FILE_BYTES + 1)
    except FileNotFoundError:
        raise CriteriaError(f"Criteria file {path} not found. {fix}") from None
    except IsADirectoryError:
        raise CriteriaError(f"Criteria file {path} is a directory, not a file. {fix}") from None
    except OSError as error:
        raise CriteriaError(f"Failed to read criteria file {path}: {error.strerror}. {fix}") from error

    if len(content) > MAX_CRITERIA_FILE_BYTES:
        raise CriteriaError(
            f"Criteria file {path} is larger than {MAX_CRITERIA_FILE_BYTES} bytes, far more than a criteria "
            "file needs. Check that the path names the right file."
        )
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CriteriaError(
            f"Criteria file {path} is not valid UTF-8 (invalid byte at offset {error.start}). "
            "Save it as UTF-8 text."
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CriteriaError(f"Criteria file {path} is not valid TOML: {error}. Fix the syntax.") from None


def _parse_document(document: dict[str, Any], origin: str) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """Validate one file's top level and profile tables, returning both parsed."""
    top = {key: value for key, value in document.items() if key != "profiles"}
    profiles: dict[str, dict[str, object]] = {}

    tables = document.get("profiles", {})
    if not isinstance(tables, dict):
        raise _invalid(
            "profiles",
            tables,
            origin,
            f"it must be a table of profile tables, not {_type_name(tables)}",
            "Write one table per profile, such as [profiles.soak].",
        )
    for name, table in tables.items():
        key = f"profiles.{name}"
        if name not in KNOWN_PROFILES:
            raise CriteriaError(
                f"Unknown profile table [{key}] in {origin}. Rename it to one of the profiles "
                f"{', '.join(KNOWN_PROFILES)}, or remove it.",
                key=key,
                value=table,
            )
        if not isinstance(table, dict):
            raise _invalid(key, table, origin, f"it must be a table, not {_type_name(table)}", f"Write [{key}] as a table.")
        profiles[name] = _parse_table(table, f"{key}.", origin)

    return _parse_table(top, "", origin), profiles


def _parse_table(table: dict[str, Any], prefix: str, origin: str) -> dict[str, object]:
    parsed: dict[str, object] = {}
    for name, value in table.items():
        key = prefix + name
        field = _FIELDS.get(name)
        if field is None:
            raise _unknown_key(key, name, value, origin)
        parsed[name] = _parse_value(key, field, value, origin)
    return parsed


# --- messages ------------------------------------------------------------------------


def _invalid(key: str, value: object, origin: str | None, problem: str, help_text: str) -> CriteriaError:
    where = f" in {origin}" if origin else ""
    return CriteriaError(
        f"Invalid value for {key}{where}: got {_show(value)}, but {problem}. {help_text}",
        key=key,
        value=value,
    )


def _unknown_key(key: str, name: str, value: object, origin: str) -> CriteriaError:
    suggestions = difflib.get_close_matches(name, _FIELDS, n=1)
    hint = f" Did you mean {suggestions[0]}?" if suggestions else ""
    return CriteriaError(
        f"Unknown criterion {key} = {_show(value)} in {origin}.{hint} Correct its name or remove it. "
        f"Known criteria: {', '.join(_FIELDS)}.",
        key=key,
        value=value,
    )


def _show(value: object) -> str:
    """Describe a TOML value for a message, in TOML's spelling where it differs, cut to a readable length."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    if len(text) > _MAX_SHOWN_VALUE_CHARS:
        text = text[: _MAX_SHOWN_VALUE_CHARS - 3] + "..."
    if isinstance(value, dict):
        return f"the table {text}"
    if isinstance(value, list):
        return f"the array {text}"
    return text


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, int):
        return "an integer"
    return f"a {type(value).__name__}"


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _require_finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")

