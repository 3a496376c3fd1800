//! Migration 6 (issue 18, item 7: record ids deduplicated per (org, id)) on a database
//! left at version 5 with records of two orgs and their tags, on SQLite and on a real
//! PostgreSQL (skipped with a message when it is not installed, unless
//! `GATEROUTER_TEST_REQUIRE_POSTGRES=1`): the keys and the tags' orgs are backfilled, the
//! stored records stay as they were, a replay of a stored record is still `duplicate`,
//! and another org may now use a stored id.
//!
//! Migration 9 (issue 21: PostgreSQL raw records partitioned by month) on a database left
//! at version 8 with records in two months.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use gaterouter::usage::RecordId;
use gaterouter_collector::db::{Db, Param};
use serde_json::json;
use sqlx::Row as _;

async fn texts(db: &Db, sql: &str) -> Vec<Vec<String>> {
    let rows = db.fetch(sql, &[], "test").await.unwrap();
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.try_get::<String, _>(i).unwrap())
                .collect()
        })
        .collect()
}

async fn dedup_backfill(url: String) {
    let (a, b) = (RecordId::new_v7().0, RecordId::new_v7().0);
    // Version 5: `usage_records.id` is the primary key, tags have no org.
    let db = Db::connect_at_version(&url, None, 5).await.unwrap();
    let glob = Spec {
        key: "k_glob",
        dept: "ops",
        ..Spec::default()
    };
    insert_raw_record(&db, &a, "acme", &Spec::default(), 2_100).await;
    insert_raw_record(&db, &b, "globex", &glob, 2_100).await;
    db.exec(
        "INSERT INTO usage_tags (record_id, k, v) VALUES ($1, 'team', 'a'), ($2, 'team', 'b')",
        &[Param::Text(a.clone()), Param::Text(b.clone())],
        "test",
    )
    .await
    .unwrap();
    db.close().await;

    // The collector opens it and migrates.
    let env = Env::start(Some(url), |_| {}).await;
    let db = &env.handle.state().db;
    let version = db
        .fetch(
            "SELECT CAST(MAX(version) AS BIGINT) FROM collector_schema",
            &[],
            "test",
        )
        .await
        .unwrap();
    // 6 is the per-org dedup; later migrations (7: the OpenTelemetry cursor) apply too.
    assert!(version[0].try_get::<i64, _>(0).unwrap() >= 6);
    let mut want_keys = vec![
        vec!["acme".to_owned(), a.clone(), "202601".into()],
        vec!["globex".to_owned(), b.clone(), "202601".into()],
    ];
    want_keys.sort();
    assert_eq!(
        texts(
            db,
            "SELECT org, id, CAST(month AS TEXT) FROM usage_record_keys ORDER BY org, id"
        )
        .await,
        want_keys
    );
    assert_eq!(
        texts(
            db,
            "SELECT org, record_id, k, v FROM usage_tags ORDER BY org"
        )
        .await,
        vec![
            vec!["acme".to_owned(), a.clone(), "team".into(), "a".into()],
            vec!["globex".to_owned(), b.clone(), "team".into(), "b".into()]
        ]
    );
    assert_eq!(
        texts(db, "SELECT org, id, api_key_id, department, CAST(spend_micros AS TEXT) FROM usage_records ORDER BY org").await,
        vec![vec!["acme".to_owned(), a.clone(), "k_eng".into(), "eng".into(), "2100".into()], vec!["globex".to_owned(), b.clone(), "k_glob".into(), "ops".into(), "2100".into()]]
    );

    // Ingest after the migration: a replay of a stored record is a duplicate; the ids of
    // stored records are free for the other org.
    let (eng, _) = env.seed_org().await;
    env.admin_ok("/v1/admin/orgs", json!({"id": "globex", "name": "Globex"}))
        .await;
    let mallory = signer(7);
    env.admin_ok(
        "/v1/admin/keys",
        json!({"id": "k_glob", "org_id": "globex", "public_key": mallory.public_key()}),
    )
    .await;
    // A record with the given id, of acme (k_eng) or of globex (k_glob, attributed from the key).
    let with_id = |id: &str, globex: bool| {
        let mut r = record(&Spec::default());
        r.id = RecordId(id.to_owned());
        if globex {
            (r.api_key_id, r.org, r.department, r.user) = ("k_glob".into(), None, None, None);
        }
        sign(&r, if globex { &mallory } else { &eng })
    };
    let (_, v) = env.ingest(&[with_id(&a, false)]).await;
    assert_eq!(
        (ids(&v, "accepted").len(), ids(&v, "duplicate")),
        (0, vec![a.clone()]),
        "{v}"
    );
    let (_, v) = env.ingest(&[with_id(&a, true), with_id(&b, false)]).await;
    assert_eq!(ids(&v, "accepted"), vec![a.clone(), b.clone()], "{v}");
    assert_eq!(
        texts(db, "SELECT org, id FROM usage_record_keys ORDER BY org, id")
            .await
            .len(),
        4
    );
    // A tag belongs to its own org's record: globex's new record `a` has no tag.
    for (org, calls) in [("acme", 1), ("globex", 0)] {
        let (_, v) = env
            .get(
                &format!("/v1/analytics/summary?org={org}&tag=team:a"),
                Some(ADMIN),
            )
            .await;
        assert_eq!(
            v["rows"][0]["calls"].as_i64().unwrap_or(0),
            calls,
            "{org}: {v}"
        );
    }
    env.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_per_org_backfills_a_version_5_database_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    dedup_backfill(format!("sqlite://{}", dir.path().join("v5.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_per_org_backfills_a_version_5_database_postgres() {
    let Some(pg) = Pg::start() else { return };
    dedup_backfill(pg.new_db().await).await;
}

async fn names(db: &Db, sql: &str) -> Vec<String> {
    texts(db, sql)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partitions_raw_records_by_month() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.new_db().await;
    // Version 8: one plain table; records of January and March 2026.
    let db = Db::connect_at_version(&url, None, 8).await.unwrap();
    let march = Spec {
        ts: 1_773_568_800_000, // 2026-03-15T10:00:00Z
        ..Spec::default()
    };
    insert_raw_record(&db, "r-jan", "acme", &Spec::default(), 1_000).await;
    insert_raw_record(&db, "r-mar", "acme", &march, 2_000).await;
    db.close().await;

    let partitions_sql = "SELECT CAST(c.relname AS TEXT) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'usage_records'::regclass ORDER BY 1";
    let env = Env::start(Some(url.clone()), |_| {}).await;
    let db = &env.handle.state().db;
    assert_eq!(
        names(db, "SELECT CAST(partstrat AS TEXT) FROM pg_partitioned_table WHERE partrelid = 'usage_records'::regclass").await,
        vec!["r"],
        "usage_records is range-partitioned"
    );
    assert_eq!(
        names(db, partitions_sql).await,
        vec!["usage_records_p202601", "usage_records_p202603"]
    );
    assert_eq!(
        names(db, "SELECT id FROM usage_records_p202603").await,
        vec!["r-mar"]
    );
    assert_eq!(
        names(
            db,
            "SELECT CAST(SUM(spend_micros) AS TEXT) FROM usage_records"
        )
        .await,
        vec!["3000"]
    );
    let indexes = names(
        db,
        "SELECT CAST(indexname AS TEXT) FROM pg_indexes WHERE tablename = 'usage_records' ORDER BY 1",
    )
    .await;
    for want in [
        "usage_key_ts",
        "usage_month_org",
        "usage_org_id",
        "usage_ts",
        "usage_user",
    ] {
        assert!(
            indexes.iter().any(|i| i == want),
            "{want} missing: {indexes:?}"
        );
    }
    assert_eq!(
        names(
            db,
            "SELECT CAST(COUNT(*) AS TEXT) FROM pg_class WHERE relname = 'usage_records_v8'"
        )
        .await,
        vec!["0"],
        "the old table is gone"
    );

    // A record of a month without a partition yet, through ingest: its partition appears.
    let (eng, _) = env.seed_org().await;
    let now = Spec {
        ts: gaterouter::usage::unix_ms_now(),
        ..Spec::default()
    };
    let month = gaterouter_collector::time::month_of_ms(now.ts);
    let (status, body) = env.ingest(&[wire(&now, &eng)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body, "accepted").len(), 1, "{body}");
    let part = format!("usage_records_p{month}");
    assert!(names(db, partitions_sql).await.contains(&part), "{part}");
    assert_eq!(
        names(db, &format!("SELECT CAST(COUNT(*) AS TEXT) FROM {part}")).await,
        vec!["1"]
    );

    // Two collectors on the database creating the same new month at once: both succeed.
    let other = Db::connect(&url, None).await.unwrap();
    let (a, b) = tokio::join!(
        db.ensure_partitions(&[202712]),
        other.ensure_partitions(&[202712])
    );
    a.unwrap();
    b.unwrap();
    assert!(
        names(db, partitions_sql)
            .await
            .contains(&"usage_records_p202712".to_owned())
    );
    // Not a month: refused before any SQL.
    assert!(db.ensure_partitions(&[202613]).await.is_err());
    assert!(db.ensure_partitions(&[-1]).await.is_err());
    other.close().await;
}

/// Migration 11 recreates the rollups (hour, day, month, latency histograms) from the
/// raw records of an older database, and narrows the raw records' analytics index.
async fn rollups_v2_fill(url: String) {
    let db = Db::connect_at_version(&url, None, 10).await.unwrap();
    let march = Spec {
        ts: 1_773_568_800_000, // 2026-03-15T10:00:00Z
        ..Spec::default()
    };
    insert_raw_record(&db, "r-jan", "acme", &Spec::default(), 1_000).await;
    insert_raw_record(&db, "r-mar", "acme", &march, 2_000).await;
    insert_raw_record(&db, "r-mar2", "acme", &march, 500).await;
    db.close().await;
    let db = Db::connect(&url, None).await.unwrap();
    for (sql, want) in [
        (
            "SELECT CAST(SUM(calls) AS TEXT) FROM usage_rollup_hour",
            "3",
        ),
        ("SELECT CAST(COUNT(*) AS TEXT) FROM usage_rollup_day", "2"),
        (
            "SELECT CAST(SUM(spend_micros) AS TEXT) FROM usage_rollup_day",
            "3500",
        ),
        (
            "SELECT CAST(SUM(spend_micros) AS TEXT) FROM usage_rollup_month WHERE month = 202603",
            "2500",
        ),
        (
            "SELECT CAST(MAX(last_start_ms) AS TEXT) FROM usage_rollup_month",
            "1773568800000",
        ),
        (
            "SELECT CAST(SUM(calls) AS TEXT) FROM usage_latency_month WHERE metric = 'latency'",
            "3",
        ),
    ] {
        assert_eq!(names(&db, sql).await, vec![want], "{sql}");
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_v2_are_filled_from_a_version_10_database_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    rollups_v2_fill(format!("sqlite://{}", dir.path().join("v10.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_v2_are_filled_from_a_version_10_database_postgres() {
    let Some(pg) = Pg::start() else { return };
    rollups_v2_fill(pg.new_db().await).await;
}
