"""``fantasyid app``: a local Gradio page to make a video from a photo, edit the 3D face and evaluate the result.

* :mod:`~fantasyid.app.backend` — :class:`AppBackend`: the app's actions on the library (no web code).
* :mod:`~fantasyid.app.ui` — :func:`build_app` / :func:`launch_app`: the Gradio page (needs the ``app`` extra).
"""

from .backend import AppBackend, AppConfig, error_text

__all__ = ["AppBackend", "AppConfig", "error_text"]
