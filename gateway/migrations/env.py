from gateway.identity.models import IdentityBase
from shared.migrations import run_env

run_env(target_metadata=[IdentityBase.metadata])
