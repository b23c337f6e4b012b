"""Errors a user can fix: the runner prints their message as one line and exits non-zero."""


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


def require_fraction(key: str, value: object) -> None:
    """``value`` must be a number in [0, 1] (a mixing weight such as alpha or lmbda)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    require(ok, key, value, "must be in [0, 1]")
