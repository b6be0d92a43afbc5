"""The local stack: embedded PostgreSQL, the Tansu broker, every service and the gateway, started as one.

Used by `make run` (through `songda run`) and by the test suite, so tests run against what users run.
"""
