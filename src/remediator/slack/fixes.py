"""What to do about an error Slack's Web API answers: the fix, named where the error is logged.

Slack answers `{"ok": false, "error": "not_in_channel"}`; the operator reading the log wants the
next step, not the code. A missing scope comes with `needed` (the scope to add).
"""

from __future__ import annotations

REISSUE = (
    "the bot token is wrong or no longer valid: copy the Bot User OAuth Token (xoxb-...) from "
    "the app's OAuth & Permissions page into slack.bot_token_env or slack.bot_token_file "
    "(reinstalling the app issues a new one)"
)
FIXES = {
    "not_in_channel": (
        "the bot is not a member of the channel: in Slack, open the channel and type "
        "/invite @remediator (or the bot's display name)"
    ),
    "channel_not_found": (
        "no such channel, or a private one the bot is not in: give the channel's ID (open the "
        "channel's details: the ID, C..., is at the bottom of About) in slack.channel or the "
        "rule's slack.channel, and invite the bot to it"
    ),
    "missing_scope": (
        "the app lacks a scope: add it under OAuth & Permissions > Bot Token Scopes (or update "
        "the app from deploy/slack/manifest.yaml) and reinstall the app to the workspace"
    ),
    "invalid_auth": REISSUE,
    "not_authed": "no bot token was sent: set slack.bot_token_env or slack.bot_token_file",
    "token_revoked": REISSUE,
    "token_expired": REISSUE,
    "account_inactive": REISSUE,
    "not_allowed_token_type": (
        "that is not a bot token: slack.bot_token_* takes the xoxb- token; the xapp- app-level "
        "token goes in slack.app_token_* (Socket Mode)"
    ),
}
# auth.test answers these when the token itself is the problem (not Slack's availability)
TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "not_allowed_token_type",
    }
)


def explain(error: str, needed: str = "") -> str:
    """`error: the fix`, or the error alone when there is no known fix."""
    fix = FIXES.get(error)
    if fix is None:
        return error
    if needed:
        fix = f"{fix} (needed: {needed})"
    return f"{error}: {fix}"
