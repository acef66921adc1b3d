"""Paging people: escalation policies (policy.py), the pagers they call (pagers.py: PagerDuty's
Events API v2, Opsgenie's Alert API), and the desk that turns the audit trail into pages, delivers
them through a durable queue and climbs the escalation path in time (desk.py)."""
