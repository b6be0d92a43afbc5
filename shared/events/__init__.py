"""Order-lifecycle events: the envelope, the outbox and its relay, the consumer with its inbox and DLQ."""
