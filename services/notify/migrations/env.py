import shared.events.models  # noqa: F401  (registers the outbox, inbox and timer tables on InfraBase)
from services.notify.models import NotifyBase
from shared.db import InfraBase
from shared.migrations import run_env

run_env(target_metadata=[InfraBase.metadata, NotifyBase.metadata])
