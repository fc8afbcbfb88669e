"""Bokeh plots for Script Panels (ETA's ``etabackend.tk.plot``).

* :func:`plot_histogram` -- a finished histogram (a table with the columns ``time bins`` and
  ``histogram events``) with Linear/Logarithmic and Save controls;
* :class:`ETABokehPlot` -- a live plot of an :class:`~etaflow.paneltk.data.ETAResult`, with
  Linear/Logarithmic, Save and Paused/Accumulation/Alignment controls; ``run(stop_flag)`` keeps
  analysing a growing file while the plot is displayed.

Bokeh is optional (``pip install etaflow[gui]``): it is imported only when a plot is built.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path

import numpy as np

from . import data as _data
from . import utils as _utils

__all__ = ["ETABokehPlot", "plot_histogram", "style_plot", "download_data"]

log = logging.getLogger("etaflow.frontend")

#: loggers quietened (WARNING and above only) while a plot updates live
LIVE_QUIET_LOGGERS = ("etaflow.frontend", "etabackend.frontend")

_TOOLS = "pan,wheel_zoom,box_zoom,reset"
_FIGURE_SIZE = 700
_MAX_PALETTE = 11


def _bokeh():
    """The bokeh package with the submodules used here; a clear ImportError without it."""
    try:
        import bokeh
        import bokeh.layouts  # noqa: F401
        import bokeh.models  # noqa: F401
        import bokeh.palettes  # noqa: F401
        import bokeh.plotting  # noqa: F401
    except ImportError as exc:
        raise ImportError("Script Panel plots need Bokeh, which is not installed: "
                          "pip install etaflow[gui]  (or: pip install bokeh)") from exc
    return bokeh


# --- styling ----------------------------------------------------------------------------------

def style_plot(fig, title=None, xlabel=None, ylabel=None, style="ETA"):
    """Apply a named look to a Bokeh figure (only ``"ETA"`` is defined); returns the figure."""
    if style != "ETA":
        return fig
    if title:
        fig.title.text = str(title)
    fig.title.align = "center"
    fig.title.text_font_size = "20pt"
    fig.title.text_font = "serif"
    for axis, label in ((fig.xaxis, xlabel), (fig.yaxis, ylabel)):
        if label:
            axis.axis_label = str(label)
        axis.axis_label_text_font_size = "14pt"
        axis.axis_label_text_font_style = "bold"
        axis.major_label_text_font_size = "12pt"
    fig.min_border_left = 0
    fig.min_border_bottom = 0
    for legend in fig.legend:
        legend.location = "top_right"
        legend.click_policy = "hide"
    return fig


def _line_colors(count: int) -> list:
    from bokeh.palettes import brewer
    if count <= 0:
        return []
    palette = list(brewer["Spectral"][min(_MAX_PALETTE, max(4, count))])
    return [palette[i % len(palette)] for i in range(count)]


def _span(values):
    """(low, high) of the finite values, widened when empty or a single point."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    low, high = float(v.min()), float(v.max())
    if low == high:
        return low - 0.5, high + 0.5
    return low, high


def _top(columns) -> float:
    """Upper end of the y axis: 10 % above the largest value (1 when there is none)."""
    peak = 0.0
    for col in columns:
        v = np.asarray(col, dtype=float).ravel()
        v = v[np.isfinite(v)]
        if v.size:
            peak = max(peak, float(v.max()))
    return peak * 1.1 if peak > 0 else 1.0


def _log_bottom(top: float) -> float:
    return 0.9 if top > 0.9 else top / 10


# --- a finished histogram ---------------------------------------------------------------------

def plot_histogram(df, data_file, result_path, title=None, x_label=None, y_label=None,
                   data_name="", file_label="", info=None):
    """A histogram with Linear/Logarithmic and Save controls; returns a Bokeh layout for
    ``doc.add_root``.

    ``df`` is a pandas DataFrame (or a dict of arrays) with the columns ``time bins`` and
    ``histogram events``; Save writes them with :func:`~etaflow.paneltk.data.save_data` to
    ``result_path`` (label ``file_label``, header ``info``)."""
    bk = _bokeh()
    source = bk.models.ColumnDataSource(df)
    xdata = np.asarray(df["time bins"])
    ydata = np.asarray(df["histogram events"])
    plin, plog = ETABokehPlot.bokeh_plot_histogram(
        source, line_names={"histogram events": data_name}, x_name="time bins", title=title,
        x_label=x_label, y_label=y_label)
    return _assemble(plin, plog, lambda: _data.save_data(xdata, ydata, data_file, result_path,
                                                         file_label, header=info))[0]


def _assemble(plin, plog, on_save, extra=()):
    """Lin/log plots above a row of controls: (layout, lin row, log row, lin/log buttons)."""
    bk = _bokeh()
    lin_row = bk.layouts.row(plin, sizing_mode="stretch_both")
    log_row = bk.layouts.row(plog, sizing_mode="stretch_both")
    save = bk.models.Button(label="Save")
    save.on_click(lambda *_: on_save())
    scale = bk.models.RadioButtonGroup(labels=["Linear", "Logarithmic"], active=0)
    controls = bk.layouts.row([save, scale, *extra], sizing_mode="stretch_width")
    layout = bk.layouts.column([lin_row, controls], sizing_mode="stretch_both")
    scale.on_change("active",
                    lambda attr, old, new: _show_scale(layout, lin_row, log_row, new))
    return layout, lin_row, log_row, scale


def _show_scale(layout, lin_row, log_row, choice):
    """Swap the plot above the controls: 0 linear, 1 logarithmic (Bokeh cannot change an
    axis type in place)."""
    wanted = log_row if choice == 1 else lin_row
    if layout.children[0] is not wanted:
        layout.children[0] = wanted


def download_data(data_source):
    """Not available (ETA never implemented it either): use the Save button."""
    raise NotImplementedError("download_data is not implemented; use the Save button "
                              "(etaflow.paneltk.data.save_data)")


# --- live plot of an ETAResult ----------------------------------------------------------------

class _QuietLogs:
    """Raise the frontend loggers to WARNING while a plot updates live, and put them back."""

    def __init__(self, names=LIVE_QUIET_LOGGERS):
        self.loggers = [logging.getLogger(n) for n in names]
        self.saved = None

    def on(self):
        if self.saved is None:
            log.info("While live updating, info messages are not shown.")
            self.saved = [lg.level for lg in self.loggers]
            for lg in self.loggers:
                lg.setLevel(logging.WARNING)

    def off(self):
        if self.saved is not None:
            for lg, level in zip(self.loggers, self.saved):
                lg.setLevel(level)
            self.saved = None
            log.info("Info messages are shown again.")


class ETABokehPlot:
    """A Bokeh plot of an :class:`~etaflow.paneltk.data.ETAResult` that can follow a growing
    file.

    ``bokeh_plot_document(doc)`` is the document function to hand to ``eta.display`` (directly
    or as ``Application(FunctionHandler(...))``); ``run(stop_flag)`` then analyses new data
    until ``stop_flag`` (the event ``eta.display`` returns) is set. The plot starts *Paused*;
    *Accumulation* and *Alignment* make it analyse and redraw every ``update_interval``
    seconds, adding new data to the total or showing each new window alone. *Save* writes the
    current curves to ``<folder of the file>/<result_folder>/`` with
    :func:`~etaflow.paneltk.data.save_data`.

    ``title`` (default ``"Histogram"``) names the plot and the saved files; ``line_label``
    the curves (numbered when there are several); ``result_label`` the saved files (and the
    title when no title is given).
    """

    def __init__(self, eta_result, result_folder="analysis", title=None, line_label=None,
                 update_interval=0.2, result_label=None):
        _bokeh()
        self.eta_result = eta_result
        self.result_folder = result_folder
        self.update_interval = float(update_interval)
        self.result_label = result_label
        if title is not None:
            self.title = str(title)
        elif result_label is not None:
            self.title = str(result_label)
        else:
            self.title = "Histogram"
        self.line_label = line_label if line_label is not None else "Histogram"
        self.x_label = "Time delay (min)" if self.title.lower() == "countrate" else None
        self.logger = log
        self.process_queue = queue.SimpleQueue()   # ETAResult changes, run in run()'s thread
        self.callback = None                       # a live periodic callback, if any
        self.stop_flag = None
        self.sessions = []                         # one dict per displayed document
        self.last_saved = None

    # --- figures ------------------------------------------------------------------------------
    @staticmethod
    def bokeh_plot_histogram(source, line_names=None, x_name="x", title=None, x_label=None,
                             y_label=None):
        """Linear and logarithmic figures of the columns ``line_names`` (column -> legend)
        against ``x_name`` of a ColumnDataSource; they share the x range. Returns
        ``(linear, log)``."""
        bk = _bokeh()
        if line_names is None:
            line_names = {"y": "data"}
        figures = [bk.plotting.figure(width=_FIGURE_SIZE, height=_FIGURE_SIZE, y_axis_type=axis,
                                      tools=_TOOLS, active_scroll="wheel_zoom")
                   for axis in ("linear", "log")]
        colors = _line_colors(len(line_names))
        for color, (column, legend) in zip(colors, line_names.items()):
            hover = bk.models.HoverTool(
                tooltips=[("Delay: ", f"@{{{x_name}}}"), ("Histogram events: ", f"@{{{column}}}")],
                mode="vline", point_policy="snap_to_data", line_policy="nearest")
            for fig in figures:
                fig.line(x=x_name, y=column, source=source, color=color, line_width=1.5,
                         legend_label=str(legend))
                fig.add_tools(hover)
        plin, plog = figures
        low, high = _span(source.data[x_name]) if x_name in source.data else (0.0, 1.0)
        plin.x_range = bk.models.Range1d(low, high)
        plog.x_range = plin.x_range
        top = _top(source.data[c] for c in line_names if c in source.data)
        plin.y_range = bk.models.Range1d(0, top)
        plog.y_range = bk.models.Range1d(_log_bottom(top), top)
        for fig in figures:
            style_plot(fig, title if title is not None else "Histogram",
                       x_label if x_label is not None else "Time delay (ps)",
                       y_label if y_label is not None else "Histogram events")
        return plin, plog

    def _columns(self) -> dict:
        res = self.eta_result
        cols = {"x": np.asarray(res.xdata)}
        cols.update({f"y{i}": np.asarray(y) for i, y in enumerate(res.ydata)})
        return cols

    def _line_names(self, count: int) -> dict:
        if count == 1:
            return {"y0": f"{self.line_label}"}
        return {f"y{i}": f"{self.line_label} {i}" for i in range(count)}

    def bokeh_plot_document(self, doc):
        """Build the plot and its controls into the Bokeh document ``doc``; returns ``doc``."""
        bk = _bokeh()
        ctx = {"doc": doc, "callback": None, "lastupdate": self.eta_result.lastupdate}
        source = bk.models.ColumnDataSource(self._columns())
        plin, plog = self.bokeh_plot_histogram(source,
                                               line_names=self._line_names(len(self.eta_result.ydata)),
                                               x_name="x", title=self.title, x_label=self.x_label)
        mode = bk.models.RadioButtonGroup(labels=["Paused", "Accumulation", "Alignment"], active=0)
        mode.on_change("active",
                       lambda attr, old, new: self._bokeh_button_alignment_callback(ctx, new))
        layout, _, _, scale = _assemble(plin, plog, self._bokeh_button_savedata_callback,
                                        extra=[mode])
        ctx.update(source=source, plin=plin, plog=plog, layout=layout, scale=scale, mode=mode)
        doc.add_root(layout)
        self.sessions.append(ctx)
        if hasattr(doc, "on_session_destroyed"):
            doc.on_session_destroyed(lambda session_context: self._forget(ctx))
        return doc

    def _forget(self, ctx):
        ctx["callback"] = None
        if ctx in self.sessions:
            self.sessions.remove(ctx)
        self._refresh_callback()

    def _refresh_callback(self):
        self.callback = next((c["callback"] for c in self.sessions if c["callback"] is not None),
                             None)

    # --- controls -----------------------------------------------------------------------------
    def _bokeh_button_savedata_callback(self):
        res = self.eta_result
        params = dict(getattr(res, "vars", None) or {})
        params["file"] = str(res.file)          # the file analysed, whatever the recipe says
        expname = params.get("expname")
        label = self.result_label or self.title or str(expname or "result").capitalize()
        path = _data.save_data(res.xdata, res.ydata, res.file,
                               Path(res.file).parent / self.result_folder, label,
                               header=_utils.info(params, expname))
        self.last_saved = path
        self.logger.info("Current data saved as new file at %s.", path)
        return path

    def _bokeh_button_alignment_callback(self, ctx, new_value):
        """0: paused; 1: accumulate new data; 2: show each new window alone (alignment)."""
        doc = ctx["doc"]
        if new_value == 0:
            if ctx["callback"] is not None:
                doc.remove_periodic_callback(ctx["callback"])
                ctx["callback"] = None
                self.logger.info("Live updating paused.")
        else:
            if ctx["callback"] is None:
                period_ms = max(int(round(self.update_interval * 1000)), 1)
                ctx["callback"] = doc.add_periodic_callback(lambda: self._bokeh_update(ctx),
                                                            period_ms)
                self.logger.info("Live updating started.")
            if new_value == 1:
                self.logger.info("Accumulation mode activated.")
                self.process_queue.put(self.eta_result.set_accumulation_mode)
            else:
                self.logger.info("Alignment mode activated.")
                self.process_queue.put(self.eta_result.set_alignment_mode)
        self._refresh_callback()

    def _bokeh_update(self, ctx):
        """Redraw when the result has changed since this document last drew it."""
        res = self.eta_result
        if ctx["lastupdate"] >= res.lastupdate:
            return
        ctx["lastupdate"] = res.lastupdate
        ctx["source"].data = self._columns()
        top = _top(res.ydata)
        ctx["plin"].y_range.end = top
        ctx["plog"].y_range.end = top
        ctx["plog"].y_range.start = _log_bottom(top)

    # --- analysis loop ------------------------------------------------------------------------
    def run(self, stop_flag):
        """Analyse new data while the plot is displayed, until ``stop_flag`` is set.

        First it catches up with the data already there (update until nothing new arrives);
        after that it updates only while some displayed plot is in Accumulation or Alignment
        mode. Info logging is quiet while updating live."""
        self.stop_flag = stop_flag
        quiet = _QuietLogs()
        catching_up = True
        simulated = bool(getattr(self.eta_result, "_simulate_growth", False))
        try:
            while not stop_flag.is_set():
                if catching_up or self.callback is not None:
                    quiet.on()
                    catching_up = bool(self.eta_result.update())
                    if not catching_up:
                        stop_flag.wait(0.02)       # never spin when the result has no timeout
                else:
                    quiet.off()
                    stop_flag.wait(self.update_interval)
                if simulated:
                    stop_flag.wait(self.update_interval)
                while True:
                    try:
                        change = self.process_queue.get_nowait()
                    except queue.Empty:
                        break
                    if change is not None:
                        change()
        finally:
            quiet.off()
