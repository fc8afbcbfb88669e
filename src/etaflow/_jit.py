"""One place for numba compiler flags, so call sites never hard-code them."""

from __future__ import annotations

import numba

# nogil: kernels run in parallel threads; cache: a second process compiles nothing.
JIT_OPTIONS = dict(nogil=True, cache=True)


def kernel(func):
    """Compile ``func`` as an etaflow hot-loop kernel."""
    return numba.njit(**JIT_OPTIONS)(func)
