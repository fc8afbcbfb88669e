"""One place for numba compiler flags, so call sites never hard-code them."""

from __future__ import annotations

import numba

# nogil: kernels run in parallel threads; cache: a second process compiles nothing.
JIT_OPTIONS = dict(nogil=True, cache=True)


def kernel(func):
    """Compile ``func`` as an etaflow hot-loop kernel."""
    return numba.njit(**JIT_OPTIONS)(func)


def inline_kernel(func):
    """A small helper kernel inlined into its numba callers (numba IR inlining), for the
    decoders' record loops. Not for helpers of generated programs: IR inlining retypes the
    helper at every call site, which doubled a recipe's first compile, while LLVM inlines a
    plain kernel into the hot loop anyway."""
    return numba.njit(inline="always", **JIT_OPTIONS)(func)
