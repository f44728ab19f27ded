"""Seeing a job: the observer executors call, the status file, Prometheus metrics, plan pictures.

Executors import this package (never :mod:`riverbed.dashboard`); it imports nothing heavy:
``prometheus-client`` is loaded only when a job serves metrics.
"""

from riverbed.observe.observer import EndState, Figures, JobObserver, StepFigures
from riverbed.observe.render import render as render_plan
from riverbed.observe.status import find_job, list_jobs, read_status, state_label, status_path

__all__ = [
    "EndState",
    "Figures",
    "JobObserver",
    "StepFigures",
    "find_job",
    "list_jobs",
    "read_status",
    "render_plan",
    "state_label",
    "status_path",
]
