"""Errors a user can fix; the CLI prints them as one line."""


class UserError(Exception):
    """A problem the user can fix, e.g. a missing kubeconfig."""
