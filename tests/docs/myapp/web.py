"""The application's web app: a stand-in for a Starlette or FastAPI application."""

from __future__ import annotations


class App:
    """Mounts sub-applications under a path, as Starlette's ``Starlette.mount`` does."""

    def __init__(self) -> None:
        self.mounted: dict[str, object] = {}

    def mount(self, path: str, app: object) -> None:
        self.mounted[path] = app


app = App()
