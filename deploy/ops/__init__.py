"""What an operator runs against a deployment, local or production: the `songda migrate` and `songda dlq` commands."""
