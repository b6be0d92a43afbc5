"""Runs schemathesis over one service's OpenAPI, over HTTP, as each kind of caller, and collects every server error.

Two phases, both reproducible (the same requests on every run):
- coverage: schemathesis' deterministic boundary cases of each operation (each field missing, null, of the wrong
  type, at and beyond its limits), each sent as ops and as one of the other roles in turn;
- fuzzing: random examples (control characters, surrogates, huge numbers...), a fixed number per operation and
  role, derandomized, with no example database and no shrinking (a failure is reported as found).
Path parameters are replaced by the ids of entities the test created (coverage: whenever the case does not vary
them; fuzzing: in half of the examples), so bodies and queries reach the code behind the 404s too. Operations that
document no body but take one (signed callbacks read theirs themselves) also get a fixed set of malformed bodies.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.support import bearer

# A valid token of every kind of caller, for the merchant `m-1` and its store `s-1` the tests seed.
ROLES: Mapping[str, dict[str, str]] = {
    "ops": bearer("ops", "ops-1"),
    "customer": bearer("customer", "openid-alice"),
    "merchant": bearer("merchant", "owner-1", "m-1"),
    "store staff": bearer("merchant", "staff-1", "m-1", store_ids=["s-1"]),
    "rider": bearer("rider", "rider-1", "m-1"),
}
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@dataclass(frozen=True)
class ServerError:
    role: str
    operation: str
    status: str
    request: str

    def __str__(self) -> str:
        return f"{self.operation} as {self.role}: {self.status} for {self.request}"


@dataclass
class FuzzReport:
    operations: int = 0
    requests: int = 0
    errors: dict[tuple[str, str], ServerError] = field(default_factory=dict)


class _Failed(Exception):
    pass


@dataclass
class _Target:
    base_url: str
    session: requests.Session
    report: FuzzReport

    def drop_connections(self) -> None:
        """uvicorn closes a connection whose request raised: the next request must not reuse it."""
        self.session.close()

    def send(self, case: Any, role: str) -> None:
        """Calls the operation; a 5xx, or a 2xx whose body is not what the operation documents, is recorded (the
        first per operation and role) and raised."""
        response = case.call(base_url=self.base_url, session=self.session, headers=ROLES[role], timeout=30)
        self.report.requests += 1
        if response.status_code >= 500:
            self.drop_connections()
            problem = str(response.status_code)
        elif response.status_code < 300:
            problem = _undocumented(case, response)
        else:
            return
        if problem is None:
            return
        sent = response.request
        error = ServerError(role, case.operation.label, problem, f"{sent.method} {sent.url} {sent.body!r}")
        self.report.errors.setdefault((error.operation, role), error)
        raise _Failed(str(error))


def _undocumented(case: Any, response: Any) -> str | None:
    try:
        case.operation.validate_response(response, case=case)
    except Exception as exc:
        return f"{response.status_code} not as documented: {str(exc).splitlines()[0]}"
    return None


def fuzz(
    base_url: str,
    known_ids: Mapping[str, str | Sequence[str]],
    *,
    max_examples: int,
    coverage: bool = True,
    skip_paths: Sequence[str] = (),
) -> FuzzReport:
    """Every (operation, role) whose fuzzing met a 5xx or an undocumented 2xx body, with the first request that
    did; operations on `skip_paths` are left out, the coverage phase too unless `coverage`. Blocking: run it in a
    thread while the service serves on the event loop."""
    openapi = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(openapi)
    report = FuzzReport()
    with requests.Session() as session:
        target = _Target(base_url, session, report)
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path in skip_paths:
                continue
            report.operations += 1
            known = {
                name: [values] if isinstance(values, str) else list(values)
                for name, values in known_ids.items()
                if name in _path_parameters(operation)
            }
            if coverage:
                cases = schema.iter_coverage_cases(
                    operation, generation_modes=MODES, generation_config=schema.config.generation
                )
                _cover(cases, known, target)
            for role in ROLES:
                _fuzz_as(operation, role, known, max_examples, target)
            if operation.method.upper() in {"POST", "PUT", "PATCH"} and not operation.body:
                _send_raw_bodies(operation, known, target)
    return report


# Bodies for operations that read their body themselves (signed callbacks) and so document none: JSON that is not
# an object, JSON with text no field can hold, not JSON at all, form-encoded.
RAW_BODIES: Sequence[tuple[str, bytes]] = (
    ("application/json", b'["x"]'),
    ("application/json", b'"x"'),
    ("application/json", b"null"),
    ("application/json", b"1e999"),
    ("application/json", b'{"order_id": {"x": []}, "status": [1], "timestamp": "x"}'),
    ("application/json", b"{"),
    ("application/json", b"\xff\xfe"),
    ("application/x-www-form-urlencoded", b"a=%FF&b=%00&c"),
    ("text/xml", b"<xml><x>"),
)


def _send_raw_bodies(operation: Any, known: Mapping[str, list[str]], target: _Target) -> None:
    names = sorted(_path_parameters(operation))
    for values in itertools.product(*(known.get(name, ["x"]) for name in names)):
        path = operation.path.format(**dict(zip(names, values, strict=True)))
        _send_raw_bodies_to(operation, path, target)


def _send_raw_bodies_to(operation: Any, path: str, target: _Target) -> None:
    for media_type, body in RAW_BODIES:
        response = target.session.request(
            operation.method.upper(),
            f"{target.base_url}{path}",
            data=body,
            headers=ROLES["ops"] | {"Content-Type": media_type},
            timeout=30,
        )
        target.report.requests += 1
        if response.status_code >= 500:
            target.drop_connections()
            error = ServerError("ops", operation.label, str(response.status_code), f"{path} {media_type} {body!r}")
            target.report.errors.setdefault((error.operation, "ops"), error)
            return


def _cover(cases: Iterable[Any], known: Mapping[str, list[str]], target: _Target) -> None:
    others = [role for role in ROLES if role != "ops"]
    baseline: dict[str, Any] | None = None
    for index, case in enumerate(cases):
        path_parameters = dict(case.path_parameters or {})
        if baseline is None:
            baseline = path_parameters
        if known and path_parameters == baseline:
            case.path_parameters = {**path_parameters, **{n: v[index % len(v)] for n, v in known.items()}}
        for role in ("ops", others[index % len(others)]):
            if (case.operation.label, role) not in target.report.errors:
                with contextlib.suppress(_Failed):
                    target.send(case, role)


def _fuzz_as(operation: Any, role: str, known: Mapping[str, list[str]], max_examples: int, target: _Target) -> None:
    known_ids = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in known.items()})

    @hypothesis.settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @hypothesis.given(
        case=st.one_of(*(operation.as_strategy(generation_mode=m) for m in MODES)),
        ids=st.none() | known_ids,
    )
    def exercise(case: Any, ids: dict[str, str] | None) -> None:
        if ids:
            case.path_parameters = {**(case.path_parameters or {}), **ids}
        target.send(case, role)

    if (operation.label, role) in target.report.errors:
        return
    with contextlib.suppress(_Failed):
        exercise()


def _path_parameters(operation: Any) -> set[str]:
    return {parameter.name for parameter in operation.path_parameters}
