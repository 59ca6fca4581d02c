"""One exception type for problems a user can fix; commands print it as one line and exit non-zero."""


class UserError(Exception):
    """Bad input or environment: the message names the file and the problem."""


class DataError(UserError):
    """A dataset is missing, truncated, corrupted or laid out wrongly."""
