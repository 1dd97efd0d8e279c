"""Attribute LibreChat requests to their users in Portkey: a sidecar reverse proxy."""

from .app import ProxyApp, create_app
from .settings import Settings, load_settings

__all__ = ["ProxyApp", "Settings", "create_app", "load_settings"]
__version__ = "0.1.0"
