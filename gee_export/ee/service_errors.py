"""What an Earth Engine failure means: its kind, and whether a daily or monthly cap is spent.

Failures are classified on the HTTP status the client keeps (the ``HttpError`` behind its
``EEException``) and on a few precise phrases, never on a number inside a message:
deterministic errors ("Too many input pixels per output pixel", "User memory limit
exceeded"...) fail at once with the server's message. The session's one retry loop
(:class:`gee_export.ee.session.EESession`) decides by :func:`classify` and :func:`spent_cap`.

A project's daily EECU-time quota (the Cloud quota
``earthengine.googleapis.com/daily_eecu_usage_time``) ends a run instead of slowing it:
requests fail with "Your usage exceeded the custom quota for
'earthengine.googleapis.com/daily_eecu_usage_time' ..." until it resets the next day, and
retrying only piles up refusals: :func:`cap_spent_error` is the run's last line.

A noncommercial project past its monthly allowance (its tier) is not refused: Earth Engine
runs its computations in restricted mode, slowed, and every answer carries the header
``X-Earth-Engine-Quota-Status: parallelism_restricted=true``, which earthengine-api turns into
a warning ("Your project has exceeded its noncommercial compute quota ..."). The answer is
the one asked for, so the run goes on and says so once (:func:`say_restricted_mode_once`);
a command that computes nothing (publishing) is not slowed at all.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import AuthenticationError, QuotaError

Kind = Literal["auth", "quota", "transient", "fatal"]

# Errors that the same request will always get again: fail at once, whatever the status.
_DETERMINISTIC = (
    "too many input pixels per output pixel", "user memory limit exceeded",
    "too many pixels in the region", "did not match any bands",
    "request payload size exceeds the limit", "must be less than or equal to 50331648 bytes",
)
# Phrases of failures that depend on load, checked only where no status says otherwise.
_TRANSIENT_PHRASES = ("computation timed out",)
_QUOTA_PHRASES = ("too many concurrent aggregations",)
# 403 with one of these reasons is googleapiclient's documented rate limit, not a permission.
_RATE_LIMIT_REASONS = ("ratelimitexceeded", "userratelimitexceeded", "quotaexceeded")
# What earthengine-api and google-auth say when no usable credentials were ever loaded: the
# client library was never initialised, the stored user credentials are missing, expired or
# revoked, or no default credentials exist. Each means "authenticate first".
_AUTH_MARKERS = (
    "earthengine authenticate", "authorize access", "not signed up", "not initialized",
    "not initialised", "not authenticated", "default credentials",
    "invalid authentication credentials", "credentials were not found", "no credentials",
    "invalid_grant", "reauthentication", "ee.initialize: no project found",
)
# Exceptions raised below HTTP (no response at all), by class name so core needs neither
# httplib2 nor google-auth: DNS failures, TLS errors, google-auth's transport errors.
_NETWORK_ERRORS = ("ServerNotFoundError", "gaierror", "SSLError", "TransportError")

DAILY_EECU_QUOTA = "earthengine.googleapis.com/daily_eecu_usage_time"
"""The Cloud quota metric of a project's daily EECU-time limit (Earth Engine's cost controls)."""

RESTRICTED_MODE = "Your project has exceeded its noncommercial compute quota"
"""How earthengine-api's warning of restricted mode begins (the quota-status header's)."""

# A quota whose limit counts per day or per month (Google's "Quota exceeded for quota metric
# 'M' and limit 'M per day' of service ..."; Earth Engine's daily EECU-time quota): spent
# until it resets, so retrying only piles up refusals.
_SPENT_CAP = re.compile(r"quota\b.{0,300}?\b(per\s*day|perday|daily|per\s*month|permonth|"
                        r"monthly)(\b|_)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class HttpStatus:
    """What the service answered: HTTP code, google.rpc status name and error reasons."""

    code: int | None = None
    rpc: str = ""
    reasons: tuple[str, ...] = ()


def http_status(exc: BaseException) -> HttpStatus:
    """The HTTP status behind ``exc``, however deep the client wrapped it.

    earthengine-api raises ``EEException(message)`` *while handling* googleapiclient's
    ``HttpError``, so the error with ``resp.status`` and the JSON body is the exception's
    ``__context__`` (or ``__cause__``, once the session re-raises it). Returns an empty status
    for errors that never got an HTTP response (timeouts, refused connections).
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop(0)
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        code = getattr(getattr(err, "resp", None), "status", None)
        if isinstance(code, int):
            return HttpStatus(code, *_error_body(getattr(err, "content", b"")))
        todo += [err.__cause__, err.__context__]
    return HttpStatus()


def _error_body(content: Any) -> tuple[str, tuple[str, ...]]:
    """google.rpc status name and reasons of a JSON error body (empty when unreadable)."""
    try:
        error = json.loads(content.decode() if isinstance(content, bytes) else content)["error"]
    except (ValueError, TypeError, KeyError, AttributeError):
        return "", ()
    reasons = [str(e.get("reason", "")) for e in error.get("errors", []) or []
               if isinstance(e, dict)]
    reasons += [str(d.get("reason", "")) for d in error.get("details", []) or []
                if isinstance(d, dict)]
    return str(error.get("status", "")), tuple(r.lower() for r in reasons if r)


def classify(exc: BaseException) -> Kind:
    """Return ``'auth'``, ``'quota'``, ``'transient'`` or ``'fatal'`` for an exception.

    The HTTP status decides where there is one (401 auth; 403 auth unless its reason is a rate
    limit; 429 quota; 408 / 5xx and a 409 ABORTED concurrency conflict transient; anything
    else fatal); a deterministic message overrides it (retrying cannot help). Without a
    status: network errors are transient, the client's "not
    initialised" and google-auth's missing/expired-credential messages are auth, everything
    else is fatal.
    """
    if isinstance(exc, AuthenticationError):
        return "auth"
    text = str(exc).lower()
    if any(p in text for p in _DETERMINISTIC):
        return "fatal"
    status = http_status(exc)
    if status.code is not None:
        return _classify_status(status, text)
    if isinstance(exc, (TimeoutError, ConnectionError)) or type(exc).__name__ in _NETWORK_ERRORS:
        return "transient"
    if type(exc).__name__ == "RefreshError" or any(m in text for m in _AUTH_MARKERS):
        return "auth"  # google-auth could not refresh the stored credentials
    if any(p in text for p in _QUOTA_PHRASES):
        return "quota"
    if any(p in text for p in _TRANSIENT_PHRASES):
        return "transient"
    return "fatal"


def _classify_status(status: HttpStatus, text: str) -> Kind:
    """The kind of an answer with an HTTP status (``text``: its message, lower case)."""
    if status.code == 401:
        return "auth"
    if status.code == 403:
        return "quota" if any(r in _RATE_LIMIT_REASONS for r in status.reasons) else "auth"
    if status.code == 429 or any(p in text for p in _QUOTA_PHRASES):
        return "quota"
    if status.code in (408, 500, 502, 503, 504) or (
            status.code == 409 and status.rpc == "ABORTED"):
        return "transient"
    if any(p in text for p in _TRANSIENT_PHRASES):
        return "transient"
    return "auth" if any(m in text for m in _AUTH_MARKERS) else "fatal"


def computation_timeout(exc: BaseException) -> bool:
    """Whether the service answered that the request took too long to compute."""
    return any(p in str(exc).lower() for p in _TRANSIENT_PHRASES)


def _texts(exc: BaseException) -> list[str]:
    """The messages and JSON bodies of ``exc`` and the errors behind it."""
    texts: list[str] = []
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen and len(texts) < 8:
        seen.add(id(err))
        content = getattr(err, "content", b"")
        texts += [str(err), content.decode(errors="replace") if isinstance(content, bytes)
                  else str(content or "")]
        err = err.__cause__ or err.__context__
    return texts


def spent_cap(exc: BaseException) -> Literal["day", "month"] | None:
    """``"day"`` or ``"month"`` when ``exc`` says a daily or monthly quota is spent, else None.

    Only a quota refusal (:func:`classify`) counts: the daily EECU-time quota's documented
    message, or a message (or the JSON body behind it) naming a limit counted per day or per
    month, which no backoff outlasts.
    """
    if classify(exc) != "quota":
        return None
    text = " ".join(_texts(exc))
    if DAILY_EECU_QUOTA in text:
        return "day"
    found = _SPENT_CAP.search(text)
    if found is None:
        return None
    return "month" if "month" in found.group(1).lower() else "day"


def pacific_midnight(now: dt.datetime | None = None) -> dt.datetime | None:
    """The next midnight in Pacific time, in UTC (None without a time-zone database)."""
    try:
        from zoneinfo import ZoneInfo

        pacific = ZoneInfo("America/Los_Angeles")
    except (ImportError, KeyError, OSError):  # no tz database (a bare Windows Python)
        return None
    local = (now or dt.datetime.now(dt.UTC)).astimezone(pacific)
    midnight = (local + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                      microsecond=0)
    return midnight.astimezone(dt.UTC)


def _reset_text(period: str, now: dt.datetime | None = None) -> str:
    """When a spent cap resets, as exactly as the service says it."""
    if period == "month":
        return ("next month (until its monthly allowance resets, Earth Engine runs the "
                "project's computations in restricted mode, slowed)")
    reset = pacific_midnight(now)
    if reset is None:
        return "the next day (Google Cloud's daily quotas end at midnight Pacific time)"
    hours = (reset - (now or dt.datetime.now(dt.UTC))).total_seconds() / 3600.0
    return (f"the next day (Google Cloud's daily quotas end at midnight Pacific time: "
            f"{reset:%Y-%m-%d %H:%M} UTC, in about {hours:.1f} h)")


def cap_spent_error(what: str, exc: BaseException, now: dt.datetime | None = None
                    ) -> QuotaError:
    """The one line that stops a run whose project spent a daily or monthly quota."""
    period = spent_cap(exc) or "day"
    said = " ".join(str(exc).split())[:300]
    raise_it = ("raise the project's 'Earth Engine compute time (EECU-time) per day' quota in "
                "the Cloud console" if period == "day" else
                "choose a higher noncommercial tier for the project")
    return QuotaError(
        f"{what} refused: the Cloud project's {'daily' if period == 'day' else 'monthly'} "
        f"Earth Engine quota is spent ({said}); no retry helps before it resets "
        f"{_reset_text(period, now)}. Run the same command again after the reset: finished "
        f"work is kept and the run resumes where it stopped (or {raise_it})")


def say_restricted_mode_once() -> None:
    """Let earthengine-api's restricted-mode warning through once a run, never as an error.

    The client warns (and goes on, slowed) when an answer carries
    ``parallelism_restricted=true``: the answer is the one asked for, so nothing stops; the
    warning is shown the first time only (commands log it as one ``warning:`` line), however
    many answers carry the header. Idempotent: the filter is added only where it is missing
    (adding it again would reset the registry that remembers the warning was shown).
    """
    message = re.escape(RESTRICTED_MODE)
    if not any(f[0] == "once" and getattr(f[1], "pattern", None) == message
               for f in warnings.filters):
        warnings.filterwarnings("once", message=message, category=UserWarning)
