"""The local-only viewer: `create_app(settings, home)` builds the Flask app."""

from .app import create_app

__all__ = ["create_app"]
