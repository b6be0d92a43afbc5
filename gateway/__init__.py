"""The gateway: JWT auth, WeChat login, routing to the services, request ids, rate limits, one OpenAPI document."""
