"""The dispatch service's refusals."""

from __future__ import annotations

from shared.errors import Conflict, NotFound, ServiceError


class DeliveryNotFound(NotFound):
    code, title = "delivery-not-found", "No such delivery"


class AccountNotFound(NotFound):
    code, title = "carrier-account-not-found", "No such carrier account"


class UnknownCarrier(NotFound):
    code, title = "unknown-carrier", "No such carrier"


class AccountTaken(Conflict):
    code, title = "carrier-account-taken", "This carrier account is already bound"


class DeliveryEnded(Conflict):
    code, title = "delivery-ended", "The delivery has ended"


class TipNotHigher(Conflict):
    code, title = "tip-not-higher", "A new tip must be higher than the current one"


class NotWaiting(Conflict):
    code, title = "not-waiting-for-rider", "Only a delivery still waiting for a rider can take this"


class CarrierRefused(Conflict):
    code, title = "carrier-refused", "The carrier refused the request"


class OfferNotOpen(Conflict):
    code, title = "offer-not-open", "This task is no longer offered to you"


class NotYourTask(NotFound):
    code, title = "task-not-found", "No such task for this rider"


class WrongStep(Conflict):
    code, title = "wrong-step", "The task is not at the step this action needs"


class CarrierUnavailable(ServiceError):
    status, code, title = 502, "carrier-unavailable", "The carrier could not be reached"
