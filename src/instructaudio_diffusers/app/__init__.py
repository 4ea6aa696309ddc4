"""The web demo's logic (`app/app.py` is its Gradio layout and entry point).

    ui            the Gradio page and `main` (`python app/app.py`): widgets wired to `core`
    core          loading, language detection, validation, generation, mel image: no Gradio import
    http_limits   what any client may send, enforced before Gradio reads a request: a plain ASGI middleware

Nothing else in the package imports this subpackage.
"""
