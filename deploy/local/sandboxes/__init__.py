"""The providers the local stack cannot reach, played on this machine in their own wire formats. Each module is an
ASGI app with a `wire` that gives it and its clients their settings; the stack's table (`deploy/local/table.py`)
starts it when a service it serves runs. Production code never imports them."""
