from shared.db import InfraBase
from shared.migrations import run_env

run_env(target_metadata=[InfraBase.metadata])
