"""SyncTwin's HTTP service (`synctwin serve`): the gate, campaign state, health and metrics.

FastAPI is imported only here, so commands that never serve do not pay for it."""

from synctwin.app.http.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
