"""The operator layer: each plan node kind defined once, for both executors.

See :mod:`riverbed.operators.base` for what an operator is, and the README's "Adding an
operator" for how to add one.
"""

from riverbed.operators.base import Operator, Outputs, Runtime, StepContext, Tick, operator, operator_for
from riverbed.operators.resolve import Resolved, resolve

__all__ = [
    "Operator",
    "Outputs",
    "Resolved",
    "Runtime",
    "StepContext",
    "Tick",
    "operator",
    "operator_for",
    "resolve",
]
