"""The order service: merchants, stores, catalogue, orders, payments and reviews."""
