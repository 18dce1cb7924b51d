"""The app domain's real-process fixtures (the web app on the session's PostgreSQL, HAProxy), for the scale-in's
choice against a real balancer."""

from tests.appdomain.conftest import app_dsn, app_processes, haproxy_process

__all__ = ["app_dsn", "app_processes", "haproxy_process"]
