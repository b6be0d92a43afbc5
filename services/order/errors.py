"""The order service's refusals, each a problem type clients can branch on."""

from __future__ import annotations

from shared.errors import BadRequest, Conflict, NotFound, ServiceError, ValidationFailed


class OrderNotFound(NotFound):
    code, title = "order-not-found", "Order not found"


class StoreNotFound(NotFound):
    code, title = "store-not-found", "Store not found"


class ProductNotFound(NotFound):
    code, title = "product-not-found", "Product not found"


class InvalidTransition(Conflict):
    code, title = "invalid-transition", "The order cannot do that in its current status"


class OutOfStock(Conflict):
    code, title = "out-of-stock", "Not enough stock"


class NotOrderable(Conflict):
    """The store or an item cannot be ordered now (closed, off shelf, outside range, below minimum)."""

    code, title = "not-orderable", "This order cannot be placed"


class StoreExists(Conflict):
    code, title = "store-exists", "A store with this id exists"


class ShippingBlocked(Conflict):
    code, title = "shipping-blocked", "The order cannot ship now"


class AlreadyReviewed(Conflict):
    code, title = "already-reviewed", "The order has a review"


class IdempotencyKeyReused(ValidationFailed):
    code, title = "idempotency-key-reused", "The Idempotency-Key was used for a different request"


class PaymentRejected(BadRequest):
    """A provider notification we refuse (bad signature, unknown trade, wrong amount); the provider retries."""

    code, title = "payment-notification-rejected", "Payment notification rejected"


class PaymentProviderError(ServiceError):
    status, code, title = 502, "payment-provider-error", "The payment provider refused or failed"


class PaymentNotConfigured(ServiceError):
    status, code, title = 503, "payment-not-configured", "Payment is not configured on this deployment"
