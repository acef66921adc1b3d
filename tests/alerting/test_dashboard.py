"""The Grafana dashboard (alerting/grafana/remediator.json) against a real Prometheus scraping a
real daemon.

A daemon runs in-process with a few rules, a Kafka Connect stand-in and a Slack stand-in;
Prometheus (Debian's binary) scrapes it every second. Once Prometheus has a sample from before
and one from after some activity (alerts posted, a restart run and verified, an approval asked
for, a dry run, a rejected webhook, Slack messages sent), every panel's query is sent to
Prometheus with the template variables substituted as Grafana would, and must run without error;
the key panels must show that activity. Meta-tests, on what a daemon exports on /metrics as it
starts (every series exists from the start): every metric family is on a panel or listed in
DELIBERATELY_ABSENT with its reason, and every metric a panel names is one the daemon exports.
Grafana itself is not run here (it is not packaged in Debian): its JSON model and provisioning
files are checked for what Grafana needs from them.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from remediator import __version__
from remediator.config import load_config
from remediator.schema import parse_duration
from remediator.server import Daemon
from remediator.trust import default_tls
from tests.alerting.files import ROOT, load
from tests.conftest import StartDaemon
from tests.payloads import alert, notification
from tests.peers import prometheus
from tests.slack_standin import SECRET, TOKEN, SlackAPI
from tests.standins import Connector, KafkaConnect

GRAFANA = ROOT / "alerting" / "grafana"
DASHBOARD_FILE = GRAFANA / "remediator.json"
CHART_COPY = ROOT / "deploy" / "helm" / "remediator" / "files" / "dashboard.json"
PROVISIONING = GRAFANA / "provisioning"
DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
JOB = "remediator"
WEBHOOK_TOKEN, API_TOKEN = "dashboard-webhook-token", "dashboard-api-token"

# Metric families the daemon exports that no panel shows, each with the reason. A family added to
# metrics.py must go on a panel or in here: the meta-test below fails until it does.
DELIBERATELY_ABSENT: dict[str, str] = {
    # Nothing today: every family metrics.py defines is on a panel.
}
# Not families of their own: prometheus_client exports `<name>_created` (the series' creation
# time, a gauge in the text format) beside every counter and histogram. Nobody graphs it; it
# follows its family, which must itself be on a panel or deliberately absent.
CREATED_SUFFIX = "_created"
# Names a panel may use that Prometheus makes rather than the daemon (none used today).
FROM_PROMETHEUS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# -- the dashboard's queries, as Grafana sends them ---------------------------------------------


def panels(dashboard: Mapping[str, Any] = DASHBOARD) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str  # as written, with Grafana's variables
    instant: bool

    def __str__(self) -> str:
        return f"{self.panel!r} {self.ref}"


QUERIES = [
    Query(p["title"], t["refId"], t["expr"], bool(t.get("instant")))
    for p in panels()
    for t in p.get("targets", [])
]


def grafana_variables() -> dict[str, str]:
    """What Grafana substitutes, for the dashboard's default time range (now-6h) and the
    provisioned data source's scrape interval (`timeInterval`): $__interval is at least the
    scrape interval, and $__rate_interval = max($__interval + scrape interval, 4 x scrape
    interval) (Grafana's Prometheus data source). $job and $instance: the scrape job, all
    instances (the variable's allValue)."""
    [source] = load(PROVISIONING / "datasources.yaml")["datasources"]
    scrape = parse_duration(source["jsonData"]["timeInterval"])
    interval = scrape
    rate_interval = max(interval + scrape, 4 * scrape)
    window = DASHBOARD["time"]["from"].removeprefix("now-")
    [instance] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "instance"]
    return {
        "__interval": f"{interval:g}s",
        "__rate_interval": f"{rate_interval:g}s",
        "__range": f"{parse_duration(window):g}s",
        "job": JOB,
        "instance": instance["allValue"],
    }


VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")


def interpolate(expr: str, variables: Mapping[str, str]) -> str:
    """The expression with $name, ${name} and [[name]] replaced; KeyError names an unknown one."""

    def value(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        if name not in variables:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return variables[name]

    return VARIABLE.sub(value, expr)


STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions (followed
    by a parenthesis), label names (inside braces or grouping clauses), durations or keywords."""
    text = STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = GROUPING.sub("", text)
    found = re.findall(r"(?<![\w.$])([A-Za-z_:][\w:]*)\b(?!\s*\()", text)
    return {name for name in found if name.lower() not in KEYWORDS}


def referenced_metrics() -> set[str]:
    return {name for q in QUERIES for name in metric_names(q.expr)}


# -- a daemon with something to show, scraped by a real Prometheus ------------------------------

RULES = """\
actions:
  restart_connector:
    kind: kafka_connect
    cluster: kafka-connect
    operation: restart
    connector: "{connector}"
    include_tasks: true
    only_failed: true
    retries: 0
    verify:
      kafka_connect: {cluster: kafka-connect, connector: "{connector}", state: [RUNNING]}
      every: 100ms
      within: 10s
  pause_connector:
    kind: kafka_connect
    cluster: kafka-connect
    operation: pause
    connector: "{connector}"
    destructive: true
rules:
  - name: connector-down
    match: '{alertname="ConnectorDown"}'
    incident_key: [alertname, connector]
    tiers: [{name: restart, actions: [restart_connector]}]
  - name: replication-lag
    match: '{alertname="HighReplicationLag"}'
    incident_key: [alertname, connector]
    tiers: [{name: pause, actions: [pause_connector]}]
  - name: data-mismatch-rehearsal
    match: '{alertname="DataMismatch"}'
    dry_run: true
    tiers: [{name: pause, actions: [pause_connector]}]
"""


def daemon_config(directory: Path, connect: KafkaConnect, slack: SlackAPI) -> Path:
    for name, secret in {
        "webhook-token": WEBHOOK_TOKEN,
        "api-token": API_TOKEN,
        "slack-token": TOKEN,
        "slack-secret": SECRET,
    }.items():
        (directory / name).write_text(secret + "\n")
    (directory / "rules.yaml").write_text(RULES)
    main = directory / "remediator.yaml"
    main.write_text(f"""\
webhook_auth: {{bearer_token_file: webhook-token}}
api_auth: {{bearer_token_file: api-token}}
store: {{sqlite: {{path: state/remediator.db}}}}
targets:
  kafka-connect: {{url: "{connect.server.url}"}}
slack:
  bot_token_file: slack-token
  signing_secret_file: slack-secret
  base_url: {slack.base_url}
  channel: '#alerts'
  retry: {{initial: 50ms, max: 200ms}}
rule_files: [rules.yaml]
""")
    return main


async def eventually(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return found


async def instant(client: httpx.AsyncClient, prom: str, expr: str) -> dict[str, Any]:
    return dict((await client.get(f"{prom}/api/v1/query", params={"query": expr})).json())


async def activity(client: httpx.AsyncClient, daemon: Daemon) -> None:
    """Alerts for each rule, an alert no rule matches, and a webhook with the wrong token."""
    url = f"http://127.0.0.1:{daemon.port}/alerts"
    good = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    for body in (
        notification(alert("ConnectorDown", connector="sink", severity="P1")),
        notification(alert("HighReplicationLag", connector="source")),
        notification(alert("DataMismatch", table="orders", connector="source")),
        notification(alert("SomethingElse")),
    ):
        assert (await client.post(url, json=body, headers=good)).status_code == 200
    wrong = {"Authorization": "Bearer wrong"}
    assert (await client.post(url, json=notification(), headers=wrong)).status_code == 401
    await daemon.engine.idle()
    await daemon.executor.idle()

    async def verified() -> bool:
        claims = (await daemon.store.list_actions(50, None)).items
        return any(c["verify_status"] == "passed" for c in claims)

    await eventually("the restart's verification", verified)
    await daemon.outbox.drain()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def observed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The URL of a Prometheus that scraped the daemon before and after its activity."""
    directory = tmp_path_factory.mktemp("dashboard")
    connect = KafkaConnect({"sink": Connector("FAILED", ["FAILED"]), "source": Connector()})
    slack = SlackAPI()
    await connect.server.start()
    await slack.start()
    daemon = Daemon(load_config(daemon_config(directory, connect, slack)))
    await daemon.start("127.0.0.1", 0)
    config = f"""\
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        scrape_configs:
          - job_name: {JOB}
            static_configs: [{{targets: ["127.0.0.1:{daemon.port}"]}}]
        """
    try:
        async with (
            prometheus(directory / "prometheus", config) as prom,
            httpx.AsyncClient(verify=default_tls(), timeout=10) as client,
        ):
            await scraped(client, prom, f'up{{job="{JOB}"}}')  # a sample from before the activity
            await activity(client, daemon)
            passed = f'remediator_verifications_total{{job="{JOB}", outcome="passed"}}'
            await scraped(client, prom, passed)  # and one from after it
            yield prom
    finally:
        await daemon.stop()
        await slack.stop()
        await connect.server.stop()


async def scraped(client: httpx.AsyncClient, prom: str, selector: str) -> None:
    """Until Prometheus holds a sample of `selector` equal to 1."""

    async def check() -> bool:
        result = (await instant(client, prom, selector))["data"]["result"]
        return any(float(r["value"][1]) == 1 for r in result)

    await eventually(f"Prometheus to scrape {selector} == 1", check)


# -- the dashboard's JSON model and provisioning ------------------------------------------------


def test_the_dashboard_has_a_prometheus_datasource_variable() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert DASHBOARD["uid"] == "remediator"
    assert DASHBOARD["title"] == "remediator"
    assert DASHBOARD.get("id") is None  # provisioning and import assign their own


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    wanted = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == wanted, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == wanted, panel["title"]
    for variable in DASHBOARD["templating"]["list"][1:]:
        assert variable["datasource"] == wanted, variable["name"]


def test_panels_have_unique_ids_titles_and_fit_the_grid() -> None:
    every = list(panels())
    assert len({p["id"] for p in every}) == len(every)
    titled = [p["title"] for p in every if p["type"] != "row"]
    assert len(set(titled)) == len(titled)
    for p in every:
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24, p["title"]
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(set(refs)) == len(refs), p["title"]


def test_the_panels_the_issue_asks_for_are_there() -> None:
    """Issue 6's list, each found by the metric its panel plots."""
    plotted: dict[str, list[str]] = {}
    for q in QUERIES:
        for name in metric_names(q.expr):
            plotted.setdefault(name, []).append(q.panel)
    for metric in (
        "remediator_actions_total",  # actions over time by outcome (and kind)
        "remediator_decisions_total",  # ... and by rule
        "remediator_action_duration_seconds_bucket",  # action latency percentiles
        "remediator_guardrail_refusals_total",  # refusals by reason
        "remediator_incidents_open",  # open incidents (by rule: no tier label)
        "remediator_approvals_pending",
        "remediator_circuit_open",
        "remediator_slack_outbox_depth",
        "remediator_slack_deliveries_total",  # outbox failures
        "remediator_notifications_received_total",  # webhook rate and errors
        "remediator_webhook_duration_seconds_bucket",  # webhook latency
        "remediator_killswitch_engaged",
        "remediator_storm_active",
        "remediator_verifications_total",
        "remediator_journal_backlog",
    ):
        assert metric in plotted, metric
    latency = [q.expr for q in QUERIES if "duration_seconds_bucket" in q.expr]
    assert all(e.startswith("histogram_quantile(") for e in latency)


def test_the_chart_ships_this_dashboard() -> None:
    assert CHART_COPY.read_text(encoding="utf-8") == DASHBOARD_FILE.read_text(encoding="utf-8"), (
        f"copy {DASHBOARD_FILE.relative_to(ROOT)} to {CHART_COPY.relative_to(ROOT)}"
    )


def test_the_provisioning_files_are_in_grafanas_format() -> None:
    dashboards = load(PROVISIONING / "dashboards.yaml")
    assert dashboards["apiVersion"] == 1
    [provider] = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    assert set(provider) <= {
        "name", "orgId", "folder", "folderUid", "type", "disableDeletion",
        "updateIntervalSeconds", "allowUiUpdates", "options",
    }  # fmt: skip
    sources = load(PROVISIONING / "datasources.yaml")
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert (source["type"], source["access"]) == ("prometheus", "proxy")
    assert source["url"].startswith("http")
    parse_duration(source["jsonData"]["timeInterval"])


def test_interpolation_replaces_every_variable_form() -> None:
    variables = {"a": "1", "__rate_interval": "60s"}
    assert interpolate("x[$__rate_interval] ${a} [[a]]", variables) == "x[60s] 1 1"
    with pytest.raises(KeyError, match=r"\$nope"):
        interpolate("x{job=$nope}", variables)
    assert grafana_variables()["__rate_interval"] == "60s"  # timeInterval 15s: 4 x 15s


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (kind, le) (rate(a_bucket{job="x", le=~"1|2"}[5m] offset 1h))', {"a_bucket"}),
        ("histogram_quantile(0.9, b) / on (job) group_left (v) c_info", {"b", "c_info"}),
        ('d > bool 0 and e unless label_replace(f, "dst", "$1", "src", "(.*)")', {"d", "e", "f"}),
        ("sort_desc(sum without (instance) (increase(g_total[1h])) > 0)", {"g_total"}),
    ],
)
def test_metric_names_are_read_from_expressions(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# -- in a real Prometheus -----------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.asyncio(loop_scope="module")
async def test_every_panel_query_runs_in_prometheus(observed: str) -> None:
    """Range queries as a time-series panel sends them, instant ones as stat and bar panels do;
    any error (parse, type, unknown function) fails, naming the panel."""
    variables = grafana_variables()
    now = time.time()
    errors = []
    async with httpx.AsyncClient(verify=default_tls(), base_url=observed, timeout=10) as client:
        for q in QUERIES:
            expr = interpolate(q.expr, variables)
            if q.instant:
                r = await client.get("/api/v1/query", params={"query": expr, "time": now})
            else:
                window = {"start": now - 300, "end": now, "step": 15}
                r = await client.get("/api/v1/query_range", params={"query": expr, **window})
            body = r.json()
            if body["status"] != "success" or body.get("warnings"):
                errors.append(f"{q}: {expr}: {body.get('error') or body.get('warnings')}")
    assert errors == []
    assert len(QUERIES) > 30


async def panel_results(observed: str, title: str) -> list[tuple[dict[str, str], float]]:
    """Every series each query of the panel returns now: (labels, value)."""
    variables = grafana_variables()
    found = []
    async with httpx.AsyncClient(verify=default_tls(), timeout=10) as client:
        for q in (q for q in QUERIES if q.panel == title):
            body = await instant(client, observed, interpolate(q.expr, variables))
            assert body["status"] == "success", body
            found += [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]
    return found


def value_of(results: list[tuple[dict[str, str], float]], **labels: str) -> float:
    matching = [v for m, v in results if all(m.get(k) == want for k, want in labels.items())]
    assert matching, (labels, results)
    return max(matching)


@pytest.mark.e2e
@pytest.mark.asyncio(loop_scope="module")
async def test_the_key_panels_show_what_the_daemon_did(observed: str) -> None:
    async def show(title: str) -> list[tuple[dict[str, str], float]]:
        return await panel_results(observed, title)

    actions = await show("Actions finished per minute, by kind and outcome")
    assert value_of(actions, kind="kafka_connect", outcome="succeeded") > 0
    assert value_of(actions, kind="kafka_connect", outcome="dry_run") > 0
    in_range = await show("Actions in the time range, by kind and outcome")
    assert value_of(in_range, kind="kafka_connect", outcome="succeeded") > 0
    decisions = await show("Decisions in the time range, by rule and decision")
    assert value_of(decisions, rule="connector-down", decision="opened") > 0
    assert value_of(await show("Decisions per minute, by rule and decision"),
                    rule="replication-lag", decision="opened") > 0  # fmt: skip
    latency = await show("Action latency, start to outcome (retries included)")
    assert math.isfinite(value_of(latency, kind="kafka_connect"))
    attempts = await show("Attempts per minute against targets, by kind and result")
    assert value_of(attempts, kind="kafka_connect", result="ok") > 0
    refusals = await show("Guardrail refusals per minute, by guardrail")
    assert value_of(refusals, guardrail="dry_run") > 0
    assert value_of(await show("Verifications per minute, by outcome"), outcome="passed") > 0
    assert value_of(await show("Open incidents, by rule"), rule="connector-down") == 1
    assert value_of(await show("Open incidents")) == 3  # one per rule
    assert value_of(await show("Pending approvals")) == 1  # the destructive pause
    assert value_of(await show("Open circuits, by target"), target="kafka-connect") == 0
    assert value_of(await show("Kill switch")) == 0
    assert value_of(await show("Alert storm")) == 0
    await assert_webhook_and_slack_panels(show)


async def assert_webhook_and_slack_panels(show: Any) -> None:
    webhook = await show("Webhook notifications per second, by outcome")
    assert value_of(webhook, outcome="accepted") > 0
    assert value_of(await show("Webhook errors per second, by outcome"), outcome="unauthorized") > 0
    assert math.isfinite(value_of(await show("Webhook latency, receipt to acknowledgement")))
    alerts = await show("Alerts received per second: by status, unmatched, stale")
    assert value_of(alerts, status="firing") > 0
    assert value_of(await show("Slack deliveries per minute, by outcome"), outcome="sent") > 0
    assert value_of(await show("Slack outbox depth")) == 0
    assert value_of(await show("Work in progress: actions running, journal backlog")) == 0
    [(version, _)] = await show("Version")
    assert version["version"] == __version__


@pytest.mark.e2e
@pytest.mark.asyncio(loop_scope="module")
async def test_the_template_variables_resolve(observed: str) -> None:
    """label_values(metric, label), as Grafana's Prometheus data source asks it: the series API."""
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    async with httpx.AsyncClient(verify=default_tls(), base_url=observed, timeout=10) as client:
        for name in ("job", "instance"):
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", variables[name]["query"])
            assert m is not None, variables[name]["query"]
            match = interpolate(m[1], {"job": JOB})
            r = await client.get(f"/api/v1/label/{m[2]}/values", params={"match[]": match})
            assert r.json()["data"], (name, match)


def exported_families(text: str) -> dict[str, set[str]]:
    """family name -> its sample names, `_created` companions left out."""
    families = {f.name: {s.name for s in f.samples} for f in text_string_to_metric_families(text)}
    return {
        name: samples
        for name, samples in families.items()
        if not (name.endswith(CREATED_SUFFIX) and name.removesuffix(CREATED_SUFFIX) in families)
    }


@pytest.fixture
async def exported(tmp_path: Path, start_daemon: StartDaemon) -> dict[str, set[str]]:
    """What a daemon that just started exports on /metrics (every series exists from the
    start), with the rules, kinds and targets of the daemon the panels are checked against."""
    connect, slack = KafkaConnect(), SlackAPI()  # named in the config, never started
    running = await start_daemon(daemon_config(tmp_path, connect, slack))
    return exported_families((await running.client.get("/metrics")).text)


def test_every_exported_metric_is_on_a_panel_or_deliberately_absent(
    exported: dict[str, set[str]],
) -> None:
    shown = referenced_metrics()
    missing = sorted(
        name
        for name, samples in exported.items()
        if not samples & shown and name not in DELIBERATELY_ABSENT
    )
    assert missing == [], "put these on a panel or in DELIBERATELY_ABSENT, with the reason"
    stale = sorted(set(DELIBERATELY_ABSENT) - set(exported))
    assert stale == [], "no longer exported: drop from DELIBERATELY_ABSENT"
    both = sorted(n for n in DELIBERATELY_ABSENT if exported[n] & shown)
    assert both == [], "on a panel after all: drop from DELIBERATELY_ABSENT"


def test_every_metric_a_panel_names_is_exported(exported: dict[str, set[str]]) -> None:
    names = {s for samples in exported.values() for s in samples}
    unknown = sorted(referenced_metrics() - names - FROM_PROMETHEUS)
    assert unknown == [], "a typo, or a metric the daemon does not export"


def test_the_meta_tests_read_what_they_should(exported: dict[str, set[str]]) -> None:
    """Neither meta-test passes for want of input: the daemon exports its whole set."""
    assert len(exported) > 20
    assert exported["remediator_actions"] == {"remediator_actions_total"}
    assert exported["remediator_build_info"] == {"remediator_build_info"}
