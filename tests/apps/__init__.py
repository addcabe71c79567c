"""Small ASGI apps that tests run in child processes (see tests/servers.py)."""
