"""The redemption service: pickup and finish codes, vouchers, the redemption ledger and its audit log."""
