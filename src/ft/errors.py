class FtError(Exception):
    """A mistake in the user's input: printed as one line (problem and fix), exit code 2."""
