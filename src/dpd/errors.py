"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class DPDUserError(ValueError):
    """Bad input from the user (config, command line, run folder). The message names the fix."""
