"""Staff sign-in at the gateway: password accounts for merchants' staff, riders and ops (argon2id), invitations,
access tokens signed like every Songda token with rotating refresh tokens, sign-in throttling, and the exchange of
an external OpenID Connect provider's tokens. Its tables live in the gateway's own database (gateway/migrations)."""
