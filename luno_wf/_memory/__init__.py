"""In-memory adapters (public through :mod:`luno_wf.memory`)."""
