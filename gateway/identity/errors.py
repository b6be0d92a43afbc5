from __future__ import annotations

from shared.errors import Conflict, NotFound, Unauthorized


class StaffNotFound(NotFound):
    code, title = "staff-not-found", "No such staff account"


class LoginTaken(Conflict):
    code, title = "login-taken", "This login belongs to another account"


class SignInFailed(Unauthorized):
    code, title = "sign-in-failed", "Wrong login or password"


class RefreshRefused(Unauthorized):
    code, title = "refresh-refused", "The refresh token is not valid"


class InvitationNotValid(Unauthorized):
    code, title = "invitation-not-valid", "The invitation or reset token is unknown, used or expired"
