"""What ``import etabackend`` gives a Script Panel: ETA's submodules ``tk``, ``clip``, ``eta``."""

from .. import clip, eta  # noqa: F401

try:
    from .. import paneltk as tk  # noqa: F401
except ImportError:  # pragma: no cover - paneltk is part of the package
    tk = None
