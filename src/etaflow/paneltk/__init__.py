"""etaflow's Script Panel toolkit, the counterpart of ETA's ``etabackend.tk``.

Inside a Script Panel ``import etabackend.tk as etatk`` gives this package:

* :mod:`.data` -- ``ETAResult`` (whole-file or growing-file analysis for a plot) and
  ``save_data`` (numbered text exports);
* :mod:`.plot` -- Bokeh plots with lin/log, save and accumulate/align controls (needs Bokeh:
  ``pip install etaflow[gui]``; imported only when a plot is built);
* :mod:`.utils` -- ``info``, the header text of exported files.
"""

from . import data, plot, utils

__all__ = ["data", "plot", "utils"]
