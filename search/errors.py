"""The search package's one user-facing error."""

from fasternet_space.errors import InputError


class SearchError(InputError):
    """A search setting that is not allowed (budget, storage, sampler, study); one line for the user."""
