"""Errors a user can fix, and the checks that raise them: the runner prints their message as one line
and exits non-zero."""

from __future__ import annotations

import importlib.util


class DistillError(Exception):
    """A problem with the user's config, data or models, stated in one line."""


class ConfigError(DistillError):
    """A config value outside what is allowed; the message names the key and the allowed values."""


class DataError(DistillError):
    """A dataset without the expected columns, an empty split, or similar."""


def require(ok: bool, key: str, value: object, allowed: str) -> None:
    """Raise ``ConfigError("<key>=<value> is invalid: <allowed>")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def is_int(value: object) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never to a config)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_int(key: str, value: object, minimum: int = 1, none_ok: bool = False) -> None:
    """``value`` must be an integer >= ``minimum`` (or None with ``none_ok``)."""
    ok = (none_ok and value is None) or (is_int(value) and value >= minimum)  # type: ignore[operator]
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    require(ok, key, value, f"must be {what}" + (" or null" if none_ok else ""))


def require_fraction(key: str, value: object) -> None:
    """``value`` must be a number in [0, 1] (a mixing weight such as alpha or lmbda)."""
    require(is_number(value) and 0 <= value <= 1, key, value, "must be in [0, 1]")  # type: ignore[operator]


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def require_package(name: str, key: str, install: str | None = None) -> None:
    """One line naming the package to install when ``key`` needs an optional one that is missing."""
    if importlib.util.find_spec(name) is None:
        raise ConfigError(f"{key} needs the package {name!r}: {install or f'pip install {name}'}")
