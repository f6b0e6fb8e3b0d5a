class FtError(Exception):
    """A mistake in the user's input: printed as one line (problem and fix), exit code 2."""


class FtRemoteError(Exception):
    """A remote service failed (no network, server error): printed as one line, exit code 1.
    Not the user's input, so not exit 2; nothing local has been changed when it is raised."""
