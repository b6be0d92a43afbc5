"""Evidence images: uploaded as the request body, size-capped while it is read, typed by its first bytes (never by
the client's Content-Type), stored in PostgreSQL, and shown only to the case's parties and ops (before a case
names it, only to its uploader)."""

from __future__ import annotations

import hashlib
import uuid

from fastapi import Request
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from services.aftersales.cases import Cases, may_see, side_of
from services.aftersales.domain import TERMINAL, State
from services.aftersales.errors import EvidenceNotFound, IdempotencyKeyReused, InvalidTransition, UnsupportedMedia
from services.aftersales.models import AftersalesCase, EvidenceFile
from shared.auth import Principal
from shared.clock import Clock
from shared.errors import Conflict, PayloadTooLarge

# (magic bytes at offset 0, an optional second marker at offset 8, the type they prove)
SIGNATURES: tuple[tuple[bytes, bytes | None, str], ...] = (
    (b"\xff\xd8\xff", None, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", None, "image/png"),
    (b"RIFF", b"WEBP", "image/webp"),
)


class TooMuchEvidence(Conflict):
    code, title = "too-much-evidence", "The case holds as much evidence as it may"


def sniff(content: bytes) -> str:
    for magic, marker, content_type in SIGNATURES:
        if content.startswith(magic) and (marker is None or content[8:12] == marker):
            return content_type
    raise UnsupportedMedia("Evidence must be a JPEG, PNG or WebP image (checked by its content)")


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is longer than `limit` (so no upload of any size is held)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Evidence is at most {limit} bytes", max_bytes=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Evidence is at most {limit} bytes", max_bytes=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def upload(
    session: AsyncSession,
    cases: Cases,
    principal: Principal,
    content: bytes,
    *,
    case_id: str | None,
    idempotency_key: str | None,
    clock: Clock,
) -> tuple[EvidenceFile, bool]:
    """Stores an image; returns it and whether it was a replay of the same Idempotency-Key."""
    side = side_of(principal)
    content_type = sniff(content)
    digest = hashlib.sha256(content).hexdigest()
    if idempotency_key:
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                              {"k": f"aftersales-evidence:{principal.sub}:{idempotency_key}"})  # fmt: skip
        existing = await session.scalar(
            select(EvidenceFile).where(
                EvidenceFile.uploaded_by == principal.sub, EvidenceFile.idempotency_key == idempotency_key
            )
        )
        if existing is not None:
            if existing.sha256 != digest or existing.case_id != case_id:
                raise IdempotencyKeyReused("This Idempotency-Key was used for another upload")
            return existing, True
    if case_id is None:
        # Uploaded ahead of an application: as many as one case may hold, per uploader, until a case names them.
        loose = await session.scalar(
            select(func.count()).where(EvidenceFile.uploaded_by == principal.sub, EvidenceFile.case_id.is_(None))
        )
        if (loose or 0) >= cases.settings.evidence_per_case:
            raise TooMuchEvidence("Name the images already uploaded in an application before uploading more")
    else:
        case = await cases.visible(session, principal, case_id, lock=True)
        if State(case.state) in TERMINAL:
            raise InvalidTransition("The case is closed", state=case.state)
        held = await session.scalar(select(func.count()).where(EvidenceFile.case_id == case.id))
        if (held or 0) >= cases.settings.evidence_per_case:
            raise TooMuchEvidence(f"A case holds at most {cases.settings.evidence_per_case} images")
    evidence = EvidenceFile(
        id=uuid.uuid4(),
        case_id=case_id,
        uploaded_by=principal.sub,
        side=side.value,
        content_type=content_type,
        size_bytes=len(content),
        sha256=digest,
        content=content,
        idempotency_key=idempotency_key,
        created_at=clock.now(),
    )
    session.add(evidence)
    await session.flush()
    return evidence, False


async def visible(session: AsyncSession, principal: Principal, evidence_id: uuid.UUID) -> EvidenceFile:
    evidence = await session.get(EvidenceFile, evidence_id)
    if evidence is None:
        raise EvidenceNotFound(f"No evidence {evidence_id}")
    if evidence.case_id is None:
        # Not yet attached to a case: its uploader's alone (not a tracking link's principal, limited to one order).
        if evidence.uploaded_by != principal.sub or principal.order_id is not None:
            raise EvidenceNotFound(f"No evidence {evidence_id}")
        return evidence
    case = await session.get_one(AftersalesCase, evidence.case_id)
    if not may_see(principal, case):
        raise EvidenceNotFound(f"No evidence {evidence_id}")
    return evidence


async def of_cases(session: AsyncSession, case_ids: list[str]) -> list[EvidenceFile]:
    """The evidence of these cases, without the images themselves."""
    return list(
        await session.scalars(
            select(EvidenceFile)
            .options(defer(EvidenceFile.content))
            .where(EvidenceFile.case_id.in_(case_ids))
            .order_by(EvidenceFile.created_at)
        )
    )
