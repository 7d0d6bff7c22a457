"""The local-only viewer: `web.create_app(settings, home)` builds the Flask app.

`create_app` is looked up on first use, so that importing a light module of this package (the
TLS helpers, for `doorbell init`) does not load Flask.
"""

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
