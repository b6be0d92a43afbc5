"""Every service's published events in one place: the registry the AsyncAPI document (docs/events/asyncapi.json)
and the contract tests (tests/contracts/) read. A service that starts publishing adds its `PUBLISHED` here.

`python -m services.event_catalogue` (or `make events-doc`) rewrites the document; `--check` fails if it is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from services.aftersales import events as aftersales_events
from services.dispatch import events as dispatch_events
from services.order import events as order_events
from services.redemption import events as redemption_events
from shared.events.catalogue import asyncapi_document
from shared.events.contracts import EventPayload

PUBLISHERS: Mapping[str, Mapping[str, type[EventPayload]]] = {
    order_events.SOURCE: order_events.PUBLISHED,
    dispatch_events.SOURCE: dispatch_events.PUBLISHED,
    redemption_events.SOURCE: redemption_events.PUBLISHED,
    aftersales_events.SOURCE: aftersales_events.PUBLISHED,
}
DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "events" / "asyncapi.json"


def rendered() -> str:
    return json.dumps(asyncapi_document(PUBLISHERS), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Writes (or checks) the AsyncAPI document of Songda's events.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in document is not current")
    args = parser.parse_args(argv)
    text = rendered()
    if args.check:
        current = DOCUMENT.exists() and DOCUMENT.read_text(encoding="utf-8") == text
        if not current:
            print(f"{DOCUMENT} is stale: run make events-doc", file=sys.stderr)
        return 0 if current else 1
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
