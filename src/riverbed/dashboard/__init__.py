"""The web dashboard: every job under riverbed's home, live (``pip install "riverbed[dashboard]"``).

It reads the status files that :class:`riverbed.observe.JobObserver` writes; executors never
import it. Starlette and uvicorn are imported when the dashboard is created.
"""

from riverbed.dashboard.app import DashboardServer, create_app, serve

__all__ = ["DashboardServer", "create_app", "serve"]
