"""Slack: the runbook's voice (templates, one thread per incident, a durable outbox) and the
operator's controls (slash commands and buttons, signed and authorised)."""
