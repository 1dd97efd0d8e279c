"""What a budget warning says: a crossing of a threshold, as the JSON body a chat webhook receives.

Slack's, Mattermost's, Rocket.Chat's incoming webhooks and Teams workflows show the body's `text`
as it is; the other fields are for whatever reads the message by machine. Slack reads `<!channel>`,
`<@U...>` and `<url|label>` in `text` as markup: names are escaped (`&`, `<`, `>`) so that a team
or an email can never ping a channel or forge a link, and controls are replaced so a name stays on
its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .money import NANOS_PER_DOLLAR, dollars_text
from .periods import Window
from .store import Scope

_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class Crossing:
    """A team or user whose spend in `window` reached `threshold` (a fraction) of its budget."""

    window: Window
    scope: Scope
    name: str
    threshold: Decimal
    spent_nanos: int
    limit_nanos: int
    # Lower thresholds crossed in the same step: claimed with it, never announced after it.
    passed: tuple[Decimal, ...] = ()


def warning_body(crossing: Crossing) -> dict[str, object]:
    """The JSON body POSTed for a crossing."""
    return {
        "text": warning_text(crossing),
        "scope": crossing.scope.value,
        "name": crossing.name,
        "period": crossing.window.key,
        "threshold": float(crossing.threshold),
        "spent_usd": _dollars(crossing.spent_nanos),
        "limit_usd": _dollars(crossing.limit_nanos),
        "resets_at": crossing.window.end.isoformat(),
    }


def warning_text(crossing: Crossing) -> str:
    """The sentence a channel shows, e.g. "The Finance team has used 80% of its budget of $500 for December..."."""
    name = slack_plain(crossing.name)
    who, whose = (f"The {name} team", "its") if crossing.scope is Scope.TEAM else (f"The user {name}", "their")
    window = crossing.window
    return (
        f"{who} has used {percent(crossing.threshold)} of {whose} budget of {dollars_text(crossing.limit_nanos)} "
        f"for {window.describe()} ({dollars_text(crossing.spent_nanos)} spent); "
        f"it resets on {window.describe_reset()}."
    )


def doctor_test_body() -> dict[str, object]:
    """What `doctor --webhook-test` sends: a `text` any of the chat webhooks shows, marked as a test."""
    text = "portkey-user-proxy: a test message from `doctor --webhook-test`. Budget warnings will arrive here."
    return {"text": text, "test": True}


def slack_plain(text: str) -> str:
    """`text` as Slack shows it literally: `&`, `<`, `>` escaped, controls and format characters replaced."""
    escaped = text.translate(_SLACK_ESCAPES)
    if escaped.isprintable():
        return escaped
    return "".join(char if char.isprintable() else _REPLACEMENT for char in escaped)


def percent(threshold: Decimal) -> str:
    """0.8 as "80%", 1.25 as "125%", 0.875 as "87.5%"."""
    return f"{(threshold * 100).normalize():f}%"


def _dollars(amount_nanos: int) -> str:
    """Exact dollars as a decimal string: "400.12", "500"."""
    return f"{(Decimal(amount_nanos) / NANOS_PER_DOLLAR).normalize():f}"
