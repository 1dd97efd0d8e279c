"""Where the request path's failures become answers: each failure to its row of the catalogue."""

from __future__ import annotations

from portkey_user_proxy import errors
from portkey_user_proxy.answers import answer_for, refusal
from portkey_user_proxy.attribution.decision import Attribution, AttributionOutcome
from portkey_user_proxy.inbound.body import BodyTooLarge


def test_an_answer_raised_is_answered_as_it_is() -> None:
    error = errors.TARGET_NOT_A_PATH.error()

    assert answer_for(error) is error


def test_a_body_over_its_limit_is_request_too_large() -> None:
    error = answer_for(BodyTooLarge(1024))

    assert error is not None
    assert (error.status, error.code) == (413, "request_too_large")
    assert "1024 bytes (MAX_REQUEST_BODY_BYTES)" in error.message


def test_a_failure_nothing_answers_is_left_to_the_last_resort() -> None:
    assert answer_for(KeyError("a bug")) is None


def test_a_rejected_attribution_says_whether_the_user_or_mongodb_was_the_problem() -> None:
    unknown = refusal(Attribution(AttributionOutcome.REJECTED, None, "not_found"))
    unavailable = refusal(Attribution(AttributionOutcome.REJECTED, None, "timeout", directory_failed=True))

    assert (unknown.status, unknown.code) == (403, "user_not_identified")
    assert "(not_found)" in unknown.message
    assert (unavailable.status, unavailable.code, unavailable.headers) == (
        503,
        "user_lookup_unavailable",
        ((b"retry-after", b"5"),),
    )
