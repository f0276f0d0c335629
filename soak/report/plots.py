"""Plots as base64-encoded PNG, ready to embed in a self-contained HTML report.

Figures are built with matplotlib's object API on the Agg canvas, so no
global backend is switched and nothing needs a display. PNGs are written
without the "Software" metadata, so the same input gives the same bytes
with the same matplotlib version.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from soak.results import RunSeries

MIB = 1024 * 1024
DPI = 100
WIDTH_IN = 10.0

# Fixed colours per run label, so the leaky and fixed runs look the same in every plot.
RUN_COLOURS = {"leaky": "#c0392b", "fixed": "#1f6fb4"}
DEFAULT_COLOUR = "#1f6fb4"

GAUGE_PANELS = (
    ("models_cached", "models cached", 1.0),
    ("retained_futures", "retained futures", 1.0),
    ("workers_active", "workers active", 1.0),
    ("queue_depth", "queue depth", 1.0),
    ("sessions_open", "sessions open", 1.0),
    ("sessions_buffered_bytes", "session buffers (MiB)", 1.0 / MIB),
    ("threads", "threads", 1.0),
    ("open_files", "open files", 1.0),
)

LabelledSeries = tuple[str, RunSeries]


def rss_over_requests(runs: list[LabelledSeries]) -> str:
    """Plot RSS right after each request against the request index, all runs on one axes.

    Each run also gets its Theil-Sen fit over the requests after the cache
    filled and its RSS limit.
    """
    figure, axes = new_figure(height_in=4.2)
    for label, series in runs:
        draw_rss_over_requests(axes, label, series)
    axes.set_title("RSS right after each request")
    return encode(figure)


def rss_over_requests_apart(runs: list[LabelledSeries]) -> str:
    """Plot RSS per request with one panel per run, each on its own scale.

    On a shared scale a leaky run's growth flattens the fixed run into a
    line; apart, the fixed run's own slope and noise stay visible.
    """
    figure = Figure(figsize=(WIDTH_IN, 3.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, len(runs), squeeze=False)[0]
    for axes, (label, series) in zip(panels, runs):
        draw_rss_over_requests(axes, label, series)
        axes.set_title(f"{label} run", fontsize=10)
    return encode(figure)


def draw_rss_over_requests(axes: Axes, label: str, series: RunSeries) -> None:
    colour = RUN_COLOURS.get(label, DEFAULT_COLOUR)
    axes.plot(
        series.request_index,
        mib(series.request_rss_bytes),
        marker="o",
        markersize=3.5,
        linewidth=1.2,
        color=colour,
        label=label,
    )
    if series.growth_fit is not None and series.request_index:
        first_index, intercept, slope = series.growth_fit
        fitted_x = np.array([first_index, max(series.request_index)], dtype=float)
        axes.plot(
            fitted_x,
            (intercept + slope * fitted_x) / MIB,
            linestyle="--",
            linewidth=1.0,
            color=colour,
            label=f"{label}: fit {slope / MIB:+.2f} MiB/request",
        )
    if series.rss_limit_bytes is not None:
        axes.axhline(series.rss_limit_bytes / MIB, linestyle=":", linewidth=1.2, color=colour, label=f"{label}: RSS limit")
    axes.set_xlabel("request index")
    axes.set_ylabel("RSS after the request (MiB)")
    finish_axes(axes)


def rss_over_time(runs: list[LabelledSeries]) -> str:
    """Plot every sample's RSS against seconds since the gateway became ready."""
    figure, axes = new_figure(height_in=4.2)
    for label, series in runs:
        colour = RUN_COLOURS.get(label, DEFAULT_COLOUR)
        axes.plot(series.sample_time_s, mib(series.sample_rss_bytes), linewidth=1.2, color=colour, label=label)
        axes.plot(
            series.request_end_s,
            mib(series.request_rss_bytes),
            linestyle="none",
            marker="o",
            markersize=3,
            color=colour,
            label=f"{label}: after a request",
        )
        if series.rss_limit_bytes is not None:
            axes.axhline(series.rss_limit_bytes / MIB, linestyle=":", linewidth=1.2, color=colour, label=f"{label}: RSS limit")

    axes.set_xlabel("seconds since the gateway was ready")
    axes.set_ylabel("RSS (MiB)")
    axes.set_title("RSS of the gateway's process tree over time")
    finish_axes(axes)
    return encode(figure)


def gauges_over_time(runs: list[LabelledSeries]) -> str:
    """Plot the status figures and process counts per sample, one panel each."""
    rows = (len(GAUGE_PANELS) + 1) // 2
    figure = Figure(figsize=(WIDTH_IN, 2.1 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(rows, 2, sharex=True).ravel()

    for panel, (key, title, scale) in zip(panels, GAUGE_PANELS):
        for label, series in runs:
            values = np.array(series.gauges.get(key, [None] * len(series.sample_time_s)), dtype=float) * scale
            panel.step(
                series.sample_time_s,
                values,
                where="post",
                linewidth=1.2,
                color=RUN_COLOURS.get(label, DEFAULT_COLOUR),
                label=label,
            )
        panel.set_title(title, fontsize=10)
        panel.grid(True, alpha=0.3)
    for panel in panels[-2:]:
        panel.set_xlabel("seconds since ready")
    if len(runs) > 1:
        panels[0].legend(fontsize=8)
    return encode(figure)


def new_figure(height_in: float) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def finish_axes(axes: Axes) -> None:
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")


def mib(values: Sequence[float | None]) -> np.ndarray:
    return np.array(values, dtype=float) / MIB


def encode(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")
