"""redeem_code(): a redemption that needs no judgement beyond the conditional update, in one statement

Revision ID: redemption_0005
Revises: redemption_events_0001

The function takes the request_no's lock, and when the request_no has no answer yet, no lockout holds the caller's
scopes, and the conditional update takes the uses of a code the caller may redeem, it writes the ledger row, the
audit row, the answer and the outbox event, and returns the answer. Otherwise it writes nothing and returns NULL:
the service then decides the refusal (or the replay) on its full path.
"""

from alembic import op

revision = "redemption_0005"
down_revision = "redemption_events_0001"
branch_labels = None
depends_on = None

REDEEM_CODE = """
CREATE FUNCTION redeem_code(
    p_scope text, p_request_no text, p_request_hash text,
    p_number text, p_code_id uuid, p_count integer, p_now timestamptz, p_redeemed_at text,
    p_merchant_id text, p_store_id text, p_finish boolean, p_order_id text,
    p_lock_scopes text[], p_lock_keys text[],
    p_redemption_id uuid, p_actor text, p_principal text, p_role text,
    p_device_id text, p_ip text, p_lat double precision, p_lng double precision, p_presented text,
    p_topic text, p_envelope jsonb
) RETURNS jsonb
LANGUAGE plpgsql
SET timezone = 'UTC'
AS $$
DECLARE
    c code%ROWTYPE;
    v_answer jsonb;
    v_subject text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('redeem:' || p_scope || ':' || p_request_no, 0));
    IF EXISTS (SELECT 1 FROM redemption_request r WHERE r.scope = p_scope AND r.request_no = p_request_no) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1 FROM lockout l JOIN unnest(p_lock_scopes, p_lock_keys) AS s(scope, key)
            ON l.scope = s.scope AND l.key = s.key
        WHERE l.locked_until > p_now
    ) THEN
        RETURN NULL;
    END IF;
    -- Two statements, so that each plan looks the code up by its index; the `(p IS NULL OR ...)` terms filter after.
    IF p_code_id IS NOT NULL THEN
        UPDATE code SET uses_left = uses_left - p_count,
            status = CASE WHEN uses_left - p_count = 0 THEN 'redeemed' ELSE status END,
            updated_at = p_now
        WHERE code.id = p_code_id
          AND status = 'active' AND uses_left >= p_count AND valid_from <= p_now AND valid_until > p_now
          AND (p_merchant_id IS NULL OR merchant_id = p_merchant_id)
          AND (p_store_id IS NULL OR store_id = p_store_id)
          AND (p_finish IS NULL OR (kind = 'finish') = p_finish)
          AND (p_order_id IS NULL OR order_id = p_order_id)
        RETURNING * INTO c;
    ELSE
        UPDATE code SET uses_left = uses_left - p_count,
            status = CASE WHEN uses_left - p_count = 0 THEN 'redeemed' ELSE status END,
            updated_at = p_now
        WHERE code.code = p_number
          AND status = 'active' AND uses_left >= p_count AND valid_from <= p_now AND valid_until > p_now
          AND (p_merchant_id IS NULL OR merchant_id = p_merchant_id)
          AND (p_store_id IS NULL OR store_id = p_store_id)
          AND (p_finish IS NULL OR (kind = 'finish') = p_finish)
          AND (p_order_id IS NULL OR order_id = p_order_id)
        RETURNING * INTO c;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO redemption (id, code_id, count, store_id, principal, device_id, request_no, redeemed_at)
    VALUES (p_redemption_id, c.id, p_count, c.store_id, p_actor, p_device_id, p_request_no, p_now);
    INSERT INTO attempt (action, merchant_id, principal, role, store_id, device_id, ip, lat, lng, code_id,
                         presented, request_no, result, failed, at)
    VALUES ('verify', c.merchant_id, p_principal, p_role, p_store_id, p_device_id, p_ip, p_lat, p_lng, c.id,
            p_presented, p_request_no, 'redeemed', false, p_now);
    v_answer := jsonb_build_object(
        'id', p_redemption_id, 'code_id', c.id, 'kind', c.kind, 'order_id', c.order_id, 'store_id', c.store_id,
        'count', p_count, 'uses_left', c.uses_left, 'status', c.status, 'redeemed_at', p_redeemed_at,
        'redeemed_by', p_actor, 'reversed_at', NULL, 'summary', c.summary);
    INSERT INTO redemption_request (scope, request_no, request_hash, status_code, answer, created_at)
    VALUES (p_scope, p_request_no, p_request_hash, 201, v_answer, p_now);
    v_subject := coalesce(c.order_id, c.id::text);
    INSERT INTO outbox (event_id, topic, key, type, envelope)
    VALUES ((p_envelope ->> 'id')::uuid, p_topic, v_subject, p_envelope ->> 'type',
            p_envelope || jsonb_build_object('subject', v_subject, 'data', jsonb_build_object(
                'code_id', c.id, 'kind', c.kind, 'order_id', c.order_id, 'merchant_id', c.merchant_id,
                'store_id', c.store_id, 'customer_id', c.customer_id, 'status', c.status,
                'uses_total', c.uses_total, 'uses_left', c.uses_left, 'valid_until', c.valid_until,
                'redemption_id', p_redemption_id, 'count', p_count, 'redeemed_by', p_actor,
                'device_id', p_device_id)));
    RETURN v_answer;
END
$$
"""


def upgrade() -> None:
    op.execute(REDEEM_CODE)


def downgrade() -> None:
    op.execute("DROP FUNCTION redeem_code")
