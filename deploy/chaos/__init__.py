"""`make chaos`: steady load through the gateway while every process of the stack is killed in turn, the broker
paused and PostgreSQL crashed; then the invariants are checked from the databases (see README, "Fault injection")."""
