"""The redemption service's refusals: precise problem types a POS or a rider app can branch on."""

from __future__ import annotations

from shared.errors import Conflict, Forbidden, NotFound, ServiceError, ValidationFailed


class CodeNotFound(NotFound):
    code, title = "code-not-found", "No such code"


class CheckDigitFailed(ValidationFailed):
    code, title = "check-digit-failed", "The code is mistyped (its check digit does not match)"


class TokenNotValid(ValidationFailed):
    code, title = "token-not-valid", "The QR code is expired or not valid; refresh it or type the numeric code"


class AlreadyRedeemed(Conflict):
    code, title = "already-redeemed", "The code has been used"


class CodeExpired(Conflict):
    code, title = "code-expired", "The code has expired"


class CodeRevoked(Conflict):
    code, title = "code-revoked", "The code was revoked"


class CodeFrozen(Conflict):
    code, title = "code-frozen", "The code is frozen (reported stolen); the customer can reissue it"


class NotYetValid(Conflict):
    code, title = "code-not-yet-valid", "The code is not valid yet"


class WrongStore(Conflict):
    code, title = "wrong-store", "The code belongs to another store"


class NotEnoughUses(Conflict):
    code, title = "not-enough-uses", "The code has fewer uses left than asked for"


class LockedOut(ServiceError):
    status, code, title = 423, "locked-out", "Too many failed attempts; try later or ask ops to unlock"


class RequestNoReused(ValidationFailed):
    code, title = "request-no-reused", "This request_no was used for a different request"


class ReversalNotAllowed(Conflict):
    code, title = "reversal-not-allowed", "This redemption cannot be reversed"


class RedemptionNotFound(NotFound):
    code, title = "redemption-not-found", "No such redemption"


class HandoverRequired(Forbidden):
    code, title = "handover-required", "A finish code is redeemed at the door, through the rider's handover"


class WrongOrder(Conflict):
    code, title = "wrong-order", "This code is not the finish code of the delivery being handed over"
