"""The notify service: subscribe-message grants, SMS fallback, merchant webhooks, in-app inbox."""
