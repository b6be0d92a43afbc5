"""The aftersales service's refusals, each a problem type clients can branch on."""

from __future__ import annotations

from shared.errors import Conflict, NotFound, ValidationFailed


class CaseNotFound(NotFound):
    code, title = "case-not-found", "After-sales case not found"


class OrderNotFound(NotFound):
    code, title = "order-not-found", "Order not found"


class EvidenceNotFound(NotFound):
    code, title = "evidence-not-found", "Evidence not found"


class InvalidTransition(Conflict):
    code, title = "invalid-transition", "The case cannot do that in its current state"


class NotApplicable(Conflict):
    """The order does not admit this application now (unpaid, outside the window, a line already in a case...)."""

    code, title = "not-applicable", "This after-sales application cannot be accepted"


class AmountTooLarge(Conflict):
    code, title = "amount-too-large", "The amount exceeds what is still refundable"


class EvidenceRequired(ValidationFailed):
    code, title = "evidence-required", "This reason needs evidence"


class InvalidReason(ValidationFailed):
    code, title = "invalid-reason", "The reason does not apply to this kind of case"


class IdempotencyKeyReused(ValidationFailed):
    code, title = "idempotency-key-reused", "The Idempotency-Key was used for a different request"


class UnsupportedMedia(ValidationFailed):
    status = 415
    code, title = "unsupported-media-type", "Evidence must be a JPEG, PNG or WebP image"
