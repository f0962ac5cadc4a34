"""Frames in, frames, figures or HTML out: compare run sets, flakiness, plots, run reports, petri
logs. Never imports a VM or a backend, so a notebook can analyse runs made elsewhere."""

from . import plot
from .compare import compare
from .flakiness import flakiness
from .runs_report import runs_report

__all__ = ["compare", "flakiness", "plot", "runs_report"]
