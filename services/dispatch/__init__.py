"""The dispatch service: deliveries, carrier adapters and accounts, own-fleet riders, carrier callbacks."""
