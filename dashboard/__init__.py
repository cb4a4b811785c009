"""clipaudit.dashboard: a Dash app that shows run folders beside the CLIP model card's limitations.

It reads run folders only (through ``clipaudit.runs``) and never runs a model. Start it with
``clipaudit dashboard --runs runs`` or ``create_app("runs").run()``.
"""
from __future__ import annotations

__all__ = ["create_app", "RunStore", "safe_path"]


def __getattr__(name: str):
    # Dash and Flask load only when the dashboard is used, not when clipaudit's CLI starts.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "RunStore":
        from .data import RunStore

        return RunStore
    if name == "safe_path":
        from .files import safe_path

        return safe_path
    raise AttributeError(name)
