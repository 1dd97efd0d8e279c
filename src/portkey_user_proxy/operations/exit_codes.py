"""Exit codes of the command line, shared by every command so scripts can tell outcomes apart."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    UNKNOWN_USER = 1  # MongoDB answered: no such user
    BAD_SETTINGS = 2  # an invalid setting (environment or .env); the message names the variable
    MONGO_UNAVAILABLE = 3  # MongoDB is unreachable, too slow, or failed
    MONGO_UNAUTHORIZED = 4  # MongoDB answered but refused: credentials or access rights in MONGO_URI
    NO_EMAIL = 5  # the user exists but has no email
    NOT_AN_OBJECT_ID = 6  # the id is not a MongoDB ObjectId: the proxy never looks it up
    CHECKS_FAILED = 7  # `doctor`: at least one check failed
    SERVER_NOT_STARTED = 8  # `serve`: the server could not start (address in use, unknown host)
    NO_USER_ID = 9  # `check-user`: no id to look up (empty, or an unresolved LibreChat placeholder)
    UNPRICED_MODEL = 10  # `budgets price`: neither the budgets file nor the catalogue prices the model
    USAGE = 64  # a bad command line (BSD sysexits' EX_USAGE), told apart from a bad setting


def describe(command: str | None = None) -> str:
    """The exit codes as lines for `--help`: the ones `command` can end with, or every one."""
    codes = COMMAND_CODES[command] if command is not None else tuple(ExitCode)
    return "\n".join(f"  {code.value:<3} {_meaning(code, command)}" for code in codes)


def _meaning(code: ExitCode, command: str | None) -> str:
    if code is ExitCode.OK and command is not None:
        return f"success: {_SUCCESS[command]}"
    return _COMMAND_MEANINGS.get((command, code), _MEANINGS[code])


# What each command can end with; every command reads the settings and its command line first.
COMMAND_CODES: dict[str, tuple[ExitCode, ...]] = {
    "serve": (ExitCode.OK, ExitCode.BAD_SETTINGS, ExitCode.SERVER_NOT_STARTED, ExitCode.USAGE),
    "check-user": (
        ExitCode.OK,
        ExitCode.UNKNOWN_USER,
        ExitCode.BAD_SETTINGS,
        ExitCode.MONGO_UNAVAILABLE,
        ExitCode.MONGO_UNAUTHORIZED,
        ExitCode.NO_EMAIL,
        ExitCode.NOT_AN_OBJECT_ID,
        ExitCode.NO_USER_ID,
        ExitCode.USAGE,
    ),
    "doctor": (ExitCode.OK, ExitCode.BAD_SETTINGS, ExitCode.CHECKS_FAILED, ExitCode.USAGE),
    "export-users": (
        ExitCode.OK,
        ExitCode.BAD_SETTINGS,
        ExitCode.MONGO_UNAVAILABLE,
        ExitCode.MONGO_UNAUTHORIZED,
        ExitCode.USAGE,
    ),
    "budgets": (
        ExitCode.OK,
        ExitCode.BAD_SETTINGS,
        ExitCode.MONGO_UNAVAILABLE,
        ExitCode.MONGO_UNAUTHORIZED,
        ExitCode.USAGE,
    ),
    "budgets price": (ExitCode.OK, ExitCode.BAD_SETTINGS, ExitCode.UNPRICED_MODEL, ExitCode.USAGE),
    # Reads no setting: the file given is checked on its own.
    "budgets check": (ExitCode.OK, ExitCode.BAD_SETTINGS, ExitCode.USAGE),
}
_SUCCESS = {
    "serve": "the server ran and stopped cleanly",
    "check-user": "the user resolves",
    "doctor": "every check passed",
    "export-users": "every user was written",
    "budgets": "the period's spend was read and written out",
    "budgets price": "the model has a price, written out",
    "budgets check": "the file is valid; its limits and prices written out",
}
_MEANINGS = {
    ExitCode.OK: "success (check-user: the user resolves; doctor: every check passed)",
    ExitCode.UNKNOWN_USER: "the user is not in the users collection MONGO_URI names",
    ExitCode.BAD_SETTINGS: "an invalid setting; the message names the variable",
    ExitCode.MONGO_UNAVAILABLE: "MongoDB is unreachable, too slow or failed",
    ExitCode.MONGO_UNAUTHORIZED: "MongoDB refused the read: credentials or access rights in MONGO_URI",
    ExitCode.NO_EMAIL: "the user exists but has no email",
    ExitCode.NOT_AN_OBJECT_ID: "the id is not a MongoDB ObjectId (24 hex characters)",
    ExitCode.CHECKS_FAILED: "doctor: at least one check failed",
    ExitCode.SERVER_NOT_STARTED: "serve: the server could not start (address in use, unknown host; the log says)",
    ExitCode.NO_USER_ID: "no user id to look up: empty, or a LibreChat placeholder left unresolved",
    ExitCode.UNPRICED_MODEL: "budgets price: neither the budgets file nor the catalogue prices the model",
    ExitCode.USAGE: "a bad command line (unknown option, missing argument; check-user: invalid --metadata)",
}
# Where a code means something more precise for one command, or its general words would mislead.
_COMMAND_MEANINGS: dict[tuple[str | None, ExitCode], str] = {
    ("check-user", ExitCode.USAGE): "a bad command line (unknown option, missing argument, invalid --metadata)",
    ("budgets price", ExitCode.USAGE): "a bad command line (unknown option, missing model, unknown --provider)",
    **{
        (command, ExitCode.USAGE): "a bad command line (unknown option, missing argument)"
        for command in ("serve", "doctor", "export-users", "budgets", "budgets check")
    },
    ("budgets", ExitCode.BAD_SETTINGS): (
        "an invalid setting, or BUDGETS_FILE unset: no budgets to report (the message says which)"
    ),
    ("budgets check", ExitCode.BAD_SETTINGS): "the file is invalid: every problem listed, each with its key",
}
