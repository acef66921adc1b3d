"""The store: where the truth lives.

The protocols its callers use are in remediator.types (one per kind of caller: the journal,
incidents and claims, controls, the Slack outbox, reads for people). Their SQL is written once,
in one module per protocol (journal.py, incidents.py, claims.py, controls.py, outbox.py,
reads.py, retention.py); dialect.py holds what differs between SQLite and PostgreSQL. A backend
(sqlite.py, postgres.py) only runs transactions: connections, group commit, errors. factory.py
builds the configured one; migrate.py runs the numbered SQL migrations for both."""
