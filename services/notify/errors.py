"""The notify service's refusals, each a problem type clients can branch on."""

from __future__ import annotations

from shared.errors import Conflict, NotFound, ValidationFailed


class NotificationNotFound(NotFound):
    code, title = "notification-not-found", "Notification not found"


class NoticeNotFound(NotFound):
    code, title = "notice-not-found", "Notice not found"


class OrderNotFound(NotFound):
    code, title = "order-not-found", "Order not found"


class StoreNotFound(NotFound):
    code, title = "store-not-found", "Store not found"


class WebhookNotFound(NotFound):
    code, title = "webhook-not-found", "Webhook endpoint not found"


class DeliveryNotFound(NotFound):
    code, title = "webhook-delivery-not-found", "Webhook delivery not found"


class TooManyGrants(Conflict):
    code, title = "too-many-grants", "The customer already holds as many open grants for this template as allowed"


class TooManyEndpoints(Conflict):
    code, title = "too-many-endpoints", "The merchant has as many webhook endpoints as allowed"


class EndpointRefused(ValidationFailed):
    code, title = "endpoint-refused", "The webhook URL may not be called"
