"""How a run's interpreter is prepared: user-managed, venv/pip, conda, docker image."""
