"""The runs directory as the page shows it (filled in next)."""


class NotFound(Exception):
    """No such run or file (answered 404)."""


def table(runs_dir, launcher):
    return []
