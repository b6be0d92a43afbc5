"""Infrastructure shared by every Songda service: settings, database, errors, auth, events, timers, the local stack.

Business rules never live here; they belong to the service that owns them.
"""
