"""The schema: every table's DDL as versioned migrations, and how a file is brought up to date.

An older file is upgraded on open, a newer one is refused. Each step is applied in its own
transaction and recorded in ``schema_version``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from forecaster.errors import SchemaVersionError

# (version, description, statements). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "series and points",
        [
            """CREATE TABLE schema_version (
                version INTEGER PRIMARY KEY,
                description VARCHAR NOT NULL,
                applied_at TIMESTAMP NOT NULL)""",
            "CREATE SEQUENCE series_id_seq START 1",
            """CREATE TABLE series (
                series_id INTEGER PRIMARY KEY DEFAULT nextval('series_id_seq'),
                service VARCHAR NOT NULL,
                metric VARCHAR NOT NULL,
                unit VARCHAR,
                kind VARCHAR NOT NULL,
                UNIQUE (service, metric))""",
            # No primary key on purpose: uniqueness of (series_id, ts) is kept by the single
            # writer's merge, and an index would cost more than the whole bulk load.
            """CREATE TABLE points (
                series_id INTEGER NOT NULL,
                ts TIMESTAMP NOT NULL,
                value DOUBLE NOT NULL)""",
        ],
    ),
    (
        2,
        "runs and their results",
        [
            "CREATE SEQUENCE run_id_seq START 1",
            """CREATE TABLE runs (
                run_id BIGINT PRIMARY KEY DEFAULT nextval('run_id_seq'),
                started_at TIMESTAMP NOT NULL,
                finished_at TIMESTAMP,
                as_of TIMESTAMP NOT NULL,
                status VARCHAR NOT NULL,
                trigger VARCHAR NOT NULL,
                error VARCHAR,
                detail JSON)""",
            # Provenance of each series in a run: model, window, freshness, why it is special.
            """CREATE TABLE run_series (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                status VARCHAR NOT NULL,
                model VARCHAR,
                transform VARCHAR,
                train_start TIMESTAMP,
                train_end TIMESTAMP,
                n_train INTEGER,
                last_point TIMESTAMP,
                freshness_s DOUBLE,
                flags VARCHAR,
                error VARCHAR,
                PRIMARY KEY (run_id, series_id))""",
            # The model chosen per series by cross-validation, kept between refreshes.
            """CREATE TABLE model_choices (
                series_id INTEGER PRIMARY KEY,
                model VARCHAR NOT NULL,
                score DOUBLE,
                scores JSON,
                chosen_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE forecasts (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                ds TIMESTAMP NOT NULL,
                mean DOUBLE,
                q05 DOUBLE, q10 DOUBLE, q25 DOUBLE, q50 DOUBLE,
                q75 DOUBLE, q90 DOUBLE, q95 DOUBLE)""",
            """CREATE TABLE anomalies (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                ts TIMESTAMP NOT NULL,
                score DOUBLE NOT NULL,
                is_anomaly BOOLEAN NOT NULL,
                detector VARCHAR NOT NULL,
                features JSON)""",
            """CREATE TABLE interventions (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                service VARCHAR NOT NULL,
                metric VARCHAR NOT NULL,
                limit_value DOUBLE NOT NULL,
                direction VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                lead_time_s DOUBLE NOT NULL,
                eta_p10 TIMESTAMP, eta_p50 TIMESTAMP, eta_p90 TIMESTAMP,
                p_breach DOUBLE NOT NULL,
                act_by TIMESTAMP,
                decision VARCHAR NOT NULL,
                next_check_at TIMESTAMP,
                reason VARCHAR NOT NULL,
                last_value DOUBLE,
                PRIMARY KEY (run_id, series_id))""",
        ],
    ),
    (
        3,
        "request logs, events and the ingest log",
        [
            # Raw requests are kept so that a bucket's percentiles are always recomputed from all
            # of its requests, whichever log brought them and in whatever order.
            """CREATE TABLE requests (
                service VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                fingerprint UHUGEINT NOT NULL,
                occurrence INTEGER NOT NULL,
                request_id VARCHAR,
                latency_ms DOUBLE,
                ttft_ms DOUBLE,
                is_error BOOLEAN,
                prompt_tokens BIGINT,
                completion_tokens BIGINT,
                quality_score DOUBLE,
                feedback DOUBLE)""",
            "CREATE SEQUENCE event_id_seq START 1",
            """CREATE TABLE events (
                event_id BIGINT PRIMARY KEY DEFAULT nextval('event_id_seq'),
                service VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                kind VARCHAR NOT NULL,
                metric VARCHAR,
                detail VARCHAR,
                recorded_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE ingest_log (
                ingested_at TIMESTAMP NOT NULL,
                source VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                rows BIGINT NOT NULL,
                stored BIGINT NOT NULL,
                updated BIGINT NOT NULL,
                duplicates BIGINT NOT NULL,
                rejected BIGINT NOT NULL,
                strict_aborted BOOLEAN NOT NULL)""",
        ],
    ),
    (
        4,
        "anomalies per series and service, precursors with interventions",
        [
            "ALTER TABLE anomalies ADD COLUMN service VARCHAR",
            "ALTER TABLE anomalies ADD COLUMN metric VARCHAR",
            # A precursor: an anomaly another kind of metric of the same service shares.
            "ALTER TABLE anomalies ADD COLUMN precursor BOOLEAN DEFAULT false",
            "ALTER TABLE anomalies ADD COLUMN corroborated_by VARCHAR",
            "ALTER TABLE anomalies ADD COLUMN detail VARCHAR",
            "ALTER TABLE interventions ADD COLUMN precursor_score DOUBLE",
            "ALTER TABLE interventions ADD COLUMN precursors JSON",
        ],
    ),
    (
        5,
        "self-scoring of published estimates",
        [
            "ALTER TABLE interventions ADD COLUMN horizon_s DOUBLE",
            "ALTER TABLE interventions ADD COLUMN reliability JSON",
            # One row per published estimate whose horizon has been observed: what happened.
            """CREATE TABLE estimate_scores (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                as_of TIMESTAMP NOT NULL,
                horizon_end TIMESTAMP NOT NULL,
                crossing TIMESTAMP,
                crossed BOOLEAN NOT NULL,
                p_breach DOUBLE NOT NULL,
                covered BOOLEAN,
                eta_error_s DOUBLE,
                warned BOOLEAN NOT NULL,
                scored_at TIMESTAMP NOT NULL,
                PRIMARY KEY (run_id, series_id))""",
        ],
    ),
    (
        6,
        "raw first-passage distribution kept with each estimate, for recalibration",
        [
            # The sample paths' own p_breach and first-passage quantiles at
            # forecaster.engine.calibration.LEVELS (seconds after the as-of time; NULL beyond the
            # horizon), before the map learned from scored estimates is applied.
            "ALTER TABLE interventions ADD COLUMN p_breach_raw DOUBLE",
            "ALTER TABLE interventions ADD COLUMN passage DOUBLE[]",
        ],
    ),
    (
        7,
        "stale answers: a series whose data stopped has no p_breach",
        [
            # decision `stale`: no forecast is made from a feed that stopped, so no probability
            "ALTER TABLE interventions ALTER COLUMN p_breach DROP NOT NULL",
        ],
    ),
    (
        8,
        "series_named: each series with its unique_id",
        [
            # `unique_id` (forecaster.names.unique_id: service:metric) is how every read names a
            # series; one view spells it, so that no query builds it again.
            """CREATE VIEW series_named AS
            SELECT series_id, service, metric, service || ':' || metric AS unique_id, unit, kind
            FROM series""",
        ],
    ),
    (
        9,
        "weekly capacity-planning reports",
        [
            # One report per ISO week (the latest made wins): the page and its figures as made,
            # so a report read later says what was said then, even after newer runs.
            """CREATE TABLE reports (
                week VARCHAR PRIMARY KEY,
                week_start TIMESTAMP NOT NULL,
                run_id BIGINT NOT NULL,
                as_of TIMESTAMP NOT NULL,
                made_at TIMESTAMP NOT NULL,
                html VARCHAR NOT NULL,
                figures JSON NOT NULL)""",
        ],
    ),
]

SCHEMA_VERSION_TABLE_EXISTS = (
    "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version' AND NOT temporary"
)
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_version"
RECORD_MIGRATION = "INSERT INTO schema_version VALUES (?, ?, ?)"

LATEST_VERSION = max(version for version, _, _ in MIGRATIONS)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of an open database; 0 for an empty one."""
    # fetchall: DuckDB 2.0 refuses further work on a cursor with an unfinished result.
    [(exists,)] = con.execute(SCHEMA_VERSION_TABLE_EXISTS).fetchall()
    if not exists:
        return 0
    [(version,)] = con.execute(SCHEMA_VERSION).fetchall()
    return int(version)


def newer_message(path: str, version: int) -> str:
    """What to say about a database written by a newer forecaster."""
    return (f"{path} has schema version {version}, but this forecaster knows versions up to "
            f"{LATEST_VERSION}: it was written by a newer forecaster. Upgrade forecaster "
            "(pip install -U forecaster) or open a copy made for this version.")


def require_latest(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """Refuse a file opened read-only that is not at :data:`LATEST_VERSION` (it cannot be
    upgraded without writing).

    Raises:
        SchemaVersionError: the file is newer, or older and needs opening writable once.
    """
    version = current_version(con)
    if version > LATEST_VERSION:
        raise SchemaVersionError(newer_message(str(db), version))
    if version < LATEST_VERSION:
        raise SchemaVersionError(
            f"{db} has schema version {version}; open it writable once to upgrade it "
            f"to {LATEST_VERSION}")


def migrate(
    con: duckdb.DuckDBPyConnection,
    applied_at: datetime,
    target: int = LATEST_VERSION,
    *,
    path: str = "database",
) -> tuple[int, int]:
    """Bring the schema up to ``target``, each step in its own transaction.

    Args:
        con: An open, writable connection.
        applied_at: The time recorded for each step applied (UTC, naive).
        target: The version to reach; lower than the latest only in tests of the upgrade path.
        path: How to name the database in messages.

    Returns:
        (version before, version after).

    Raises:
        SchemaVersionError: when the database is newer than this forecaster knows.
    """
    before = current_version(con)
    if before > LATEST_VERSION:
        raise SchemaVersionError(newer_message(path, before))
    for version, description, statements in MIGRATIONS:
        if before < version <= target:
            con.execute("BEGIN TRANSACTION")
            try:
                for statement in statements:
                    con.execute(statement)
                con.execute(RECORD_MIGRATION, [version, description, applied_at])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    return before, max(before, min(target, LATEST_VERSION))
