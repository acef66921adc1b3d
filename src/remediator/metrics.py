"""Every metric the daemon exports, defined once, on a registry passed in.

Names follow Prometheus conventions: `remediator_` prefix, base units, `_total` counters. Labels are
bounded (outcomes, statuses, action kinds, rule names from config); never fingerprints, group keys
or incident ids. Series known to exist are created at zero so that rate() works from the start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

import prometheus_client
from prometheus_client import CollectorRegistry, Info
from prometheus_client.metrics import MetricWrapperBase

from remediator import __version__
from remediator.guardrails import GUARDRAILS
from remediator.store.records import FINISHED

# What retention deletes from (remediator.retention), one series each.
PRUNED_TABLES = (
    "journal",
    "incidents",
    "alert_instances",
    "claims",
    "attempts",
    "approvals",
    "audit",
    "slack_messages",
    "slack_outbox",
)
NOTIFICATION_OUTCOMES = (
    "accepted",
    "unauthorized",
    "too_large",
    "unsupported_media_type",
    "invalid",
    "unavailable",
)
ACTION_OUTCOMES = FINISHED  # every way a claim can end
DECISIONS = ("opened", "escalated", "resolved", "no_value", "needs_human", "closed")
ESCALATION_CAUSES = ("value", "time", "repeats", "verification")
SLACK_REQUEST_OUTCOMES = ("ok", "unauthorized", "forbidden", "invalid")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ACTION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _SeriesFound(MetricWrapperBase):
    """`.labels()` that finds a series already made in a dict look-up. prometheus_client's takes
    the metric's lock and builds the key again on every call (about 4.5 us, eight calls per new
    incident); a series is made, removed or cleared under that lock as before, and a look-up
    that misses (a new series, values that are not str, keywords) goes the library's way."""

    def labels(self, *values: Any, **by_name: Any) -> Self:
        series: dict[tuple[Any, ...], Self] | None = getattr(self, "_metrics", None)
        if series is not None and not by_name:
            found = series.get(values)
            if found is not None:
                return found
        return super().labels(*values, **by_name)


class Counter(_SeriesFound, prometheus_client.Counter):
    pass


class Gauge(_SeriesFound, prometheus_client.Gauge):
    pass


class Histogram(_SeriesFound, prometheus_client.Histogram):
    pass


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = Info(
            "remediator_build", "Version of the running remediator.", registry=registry
        )
        self.build_info.info({"version": __version__})
        self.notifications = Counter(
            "remediator_notifications_received_total",
            "Alertmanager webhook notifications received, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.quarantined = Counter(
            "remediator_notifications_quarantined_total",
            "Acknowledged notifications the engine could not decide, even alone: set aside "
            "(journal row kept, audit event journal_quarantined) so their neighbours are decided.",
            registry=registry,
        )
        self.webhook_duration = Histogram(
            "remediator_webhook_duration_seconds",
            "Time from receiving a webhook to acknowledging it (journal written).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.alerts = Counter(
            "remediator_alerts_received_total",
            "Alerts in accepted notifications, by status.",
            ["status"],
            registry=registry,
        )
        self.alerts_unmatched = Counter(
            "remediator_alerts_unmatched_total", "Alerts that matched no rule.", registry=registry
        )
        self.alerts_stale = Counter(
            "remediator_alerts_stale_total",
            "Firing alerts ignored because that alert instance had already resolved.",
            registry=registry,
        )
        self.decisions = Counter(
            "remediator_decisions_total",
            "Incident decisions, by rule and decision.",
            ["rule", "decision"],
            registry=registry,
        )
        self.incidents_open = Gauge(
            "remediator_incidents_open", "Open incidents, by rule.", ["rule"], registry=registry
        )
        self.actions = Counter(
            "remediator_actions_total",
            "Actions finished, by kind and outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.action_duration = Histogram(
            "remediator_action_duration_seconds",
            "Time from an action's start to its outcome, retries included, by kind.",
            ["kind"],
            buckets=ACTION_BUCKETS,
            registry=registry,
        )
        self.action_attempts = Counter(
            "remediator_action_attempts_total",
            "Attempts made against targets, by kind and result.",
            ["kind", "result"],
            registry=registry,
        )
        self.actions_running = Gauge(
            "remediator_actions_running", "Actions in progress.", registry=registry
        )
        self.guardrail_refusals = Counter(
            "remediator_guardrail_refusals_total",
            "Actions a guardrail refused (or turned into a dry run), by guardrail.",
            ["guardrail"],
            registry=registry,
        )
        self.killswitch = Gauge(
            "remediator_killswitch_engaged", "1 while the kill switch is on.", registry=registry
        )
        self.mutes_active = Gauge("remediator_mutes_active", "Mutes in force.", registry=registry)
        self.approvals_pending = Gauge(
            "remediator_approvals_pending",
            "Actions waiting for a human's approval.",
            registry=registry,
        )
        self.circuit_open = Gauge(
            "remediator_circuit_open",
            "1 while a target's circuit breaker is open, by target.",
            ["target"],
            registry=registry,
        )
        self.verifications = Counter(
            "remediator_verifications_total",
            "Verifications finished, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.escalations = Counter(
            "remediator_escalations_total",
            "Incidents moved up a tier, by rule and cause.",
            ["rule", "cause"],
            registry=registry,
        )
        self.storm_active = Gauge(
            "remediator_storm_active", "1 while an alert storm is summarised.", registry=registry
        )
        self.slack_outbox_depth = Gauge(
            "remediator_slack_outbox_depth",
            "Slack messages waiting to be delivered.",
            registry=registry,
        )
        self.slack_deliveries = Counter(
            "remediator_slack_deliveries_total",
            "Slack delivery attempts, by outcome (sent, retried, failed).",
            ["outcome"],
            registry=registry,
        )
        self.slack_requests = Counter(
            "remediator_slack_requests_total",
            "Slash commands and button clicks received, by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.pager_outbox_depth = Gauge(
            "remediator_pager_outbox_depth",
            "Pager events (PagerDuty, Opsgenie) waiting to be delivered.",
            registry=registry,
        )
        self.pager_deliveries = Counter(
            "remediator_pager_deliveries_total",
            "Pager delivery attempts, by outcome (sent, retried, failed).",
            ["outcome"],
            registry=registry,
        )
        self.page_escalations = Counter(
            "remediator_page_escalations_total",
            "Pages climbed to the next level of their escalation policy, unacknowledged.",
            registry=registry,
        )
        self.journal_backlog = Gauge(
            "remediator_journal_backlog",
            "Acknowledged notifications not yet processed.",
            registry=registry,
        )
        self.dry_run = Gauge(
            "remediator_dry_run",
            "1 while guardrails.dry_run is on: every rule records what it would do, and does "
            "nothing (a rule's own dry_run is not counted here).",
            registry=registry,
        )
        self.store_pruned = Counter(
            "remediator_store_pruned_rows_total",
            "Rows retention deleted from the store, by table.",
            ["table"],
            registry=registry,
        )
        self.config_reload_ok = Gauge(
            "remediator_config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none was asked for), 0 if refused.",
            registry=registry,
        )
        self.config_reload_time = Gauge(
            "remediator_config_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded (start or the last good reload).",
            registry=registry,
        )
        self.leader = Gauge(
            "remediator_leader",
            "1 while this replica leads (decides, runs actions, timers and outboxes), else 0.",
            registry=registry,
        )
        self.leader_changes = Counter(
            "remediator_leader_changes",
            "Times this replica took or lost the leadership.",
            registry=registry,
        )
        for outcome in NOTIFICATION_OUTCOMES:
            self.notifications.labels(outcome)
        for status in ("firing", "resolved"):
            self.alerts.labels(status)
        for guardrail in GUARDRAILS:
            self.guardrail_refusals.labels(guardrail)
        for outcome in ("passed", "failed"):
            self.verifications.labels(outcome)
        for outcome in ("sent", "retried", "failed"):
            self.slack_deliveries.labels(outcome)
            self.pager_deliveries.labels(outcome)
        for table in PRUNED_TABLES:
            self.store_pruned.labels(table)
        for endpoint in ("commands", "interactions"):
            for outcome in SLACK_REQUEST_OUTCOMES:
                self.slack_requests.labels(endpoint, outcome)

    def declare(
        self, rules: Iterable[str], kinds: Iterable[str], targets: Iterable[str] = ()
    ) -> None:
        """Create the series for the configured rules, action kinds and targets, at zero."""
        for target in targets:
            self.circuit_open.labels(target)
        for rule in rules:
            self.incidents_open.labels(rule)
            for decision in DECISIONS:
                self.decisions.labels(rule, decision)
            for cause in ESCALATION_CAUSES:
                self.escalations.labels(rule, cause)
        for kind in kinds:
            self.action_duration.labels(kind)
            for outcome in ACTION_OUTCOMES:
                self.actions.labels(kind, outcome)
            for result in ("ok", "error"):
                self.action_attempts.labels(kind, result)
