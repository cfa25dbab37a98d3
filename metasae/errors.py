"""One exception type for input a user can fix; the CLI prints it as a single line, never a traceback."""


class MetasaeError(Exception):
    """Bad input, a missing file or a corrupt artefact: the message names the file or key and the fix."""
