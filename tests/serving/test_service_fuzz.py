"""Fuzzing the service from its own OpenAPI document (schemathesis), in process.

Every operation of ``/docs.json`` gets requests that follow the schema and requests that break
it (wrong types, missing fields, extra fields, odd strings), with the bearer token. No answer
may be a 5xx, every 4xx must be the documented error body (``ErrorResponse``), and every
answer must match the schema documented for its status. Bounded and derandomized: the same
cases on every run, in well under a minute.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from abm_ml.service.responses import ErrorResponse
from abm_ml.service.settings import ENV_API_TOKEN, ENV_MAX_BODY_BYTES, ENV_MAX_RECORDS
from abm_ml.testing import asgi_app

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

TOKEN = "tok-fuzz-0b6e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 100
"""Cases per operation and generation mode; the scoring operations dominate the run time."""

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

STATUSES: Counter[tuple[str, int]] = Counter()
"""(operation, status) of every case sent, reported by :func:`test_fuzz_figures`."""


@pytest.fixture(scope="module")
def api_schema(svc, tmp_path_factory):
    """The service's OpenAPI document, loaded from its in-process app with the token set."""
    from schemathesis.python import asgi

    with pytest.MonkeyPatch.context() as mp:
        # /metrics reads Prometheus' multiprocess folder, which `bentoml serve` sets up
        mp.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path_factory.mktemp("prometheus")))
        mp.setenv(ENV_API_TOKEN, TOKEN)
        mp.setenv(ENV_MAX_RECORDS, "20")  # small batches: more cases in the time
        mp.setenv(ENV_MAX_BODY_BYTES, "65536")  # big generated bodies meet the limit
        schema = schemathesis.openapi.from_asgi(
            "/docs.json", asgi_app(svc.AbmScoringService), headers=AUTH
        )
        schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)
        # Invalid data is refused with 400, 413 (over a documented limit) or 422, all documented.
        checks = schema.config.checks
        checks.negative_data_rejection.expected_statuses = ["400", "413", "422"]
        # Valid data may be over ABM_ML_MAX_BODY_BYTES, which no JSON schema can say: 413.
        checks.positive_data_acceptance.expected_statuses = [
            *checks.positive_data_acceptance.expected_statuses,
            "413",
        ]
        yield schema
        asgi.shutdown_lifespans()  # the service instance schemathesis started for the app


def check_answer(case) -> None:
    """Send one case with the token; no 5xx, 4xx in the error shape, as documented."""
    response = case.call(headers=AUTH, timeout=30)
    STATUSES[(f"{case.method} {case.path}", response.status_code)] += 1
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if 400 <= response.status_code < 500:
        ErrorResponse.model_validate(response.json())
    case.validate_response(response, headers=AUTH)


# schemathesis' own pytest integration (``from_fixture``) fails on pytest 9 (``_nodeid``), so
# each operation's Hypothesis strategy is run here directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_5xx_and_documented_errors(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 4
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not list(operation.body):
            continue  # nothing to break in a GET without parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @FUZZ_SETTINGS
        def fuzz(case):
            check_answer(case)

        fuzz()


def test_fuzz_figures():
    """Every operation was reached, with accepted and refused cases; prints the figures."""
    if not STATUSES:
        pytest.skip("the fuzz test did not run (selected alone)")
    by_status = Counter()
    for (operation, status), n in sorted(STATUSES.items()):
        by_status[status] += n
        print(f"{operation:<24} {status}: {n}")
    print(f"total {sum(by_status.values())} cases: {dict(sorted(by_status.items()))}")
    operations = {operation for operation, _ in STATUSES}
    assert {"POST /score", "POST /rank", "POST /explain", "GET /metadata"} <= operations
    assert not [s for s in by_status if s >= 500]
    assert by_status[200] and by_status[422]
