"""The error a build stage raises when it must stop before doing harm (a bad configuration, a folder in use).

Library code raises it and never exits; `python -m build` prints its message and exits with USAGE_EXIT,
the code argparse gives a bad command line, because the fix is the same kind: change what you asked for.
"""

from __future__ import annotations

USAGE_EXIT = 2


class BuildError(Exception):
    """A stop with a message that says what to change; nothing has been written when it is raised."""
