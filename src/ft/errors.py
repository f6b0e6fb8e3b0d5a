"""ft's three kinds of error, and the did-you-mean its messages share."""

import difflib
from collections.abc import Iterable


class FtError(Exception):
    """A mistake in the user's input: printed as one line (problem and fix), exit code 2."""


class FtRemoteError(Exception):
    """A remote service failed (no network, server error): printed as one line, exit code 1.
    Not the user's input, so not exit 2; nothing local has been changed when it is raised."""


class FtCheckFailed(Exception):
    """A check of ft's own output failed (e.g. an export's parity with transformers): one line naming what
    differed, exit code 1. The output is kept for inspection."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "did you mean 'X'? " for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{close[0]}'? " if close else ""
