//! Routing learning as stored (migrations 12 to 15): per-org settings, the learning
//! features of `auto` records, signed weights versions and learning runs (per org, and per
//! project: `project = ''` is the org's own), and the collector's weights signing key.

use base64::Engine as _;
use gaterouter::accounts::{RoutingPolicy, SignedWeights};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;

use crate::db::{
    Backend, Db, DbError, Param, bind_all, dberr, get_i64, get_opt_i64, get_opt_str, get_str,
    placeholders,
};
use crate::verified::Verified;

/// Default hashed-term buckets of an org: `2^14` (the weights file then holds 16 KB of
/// int8 term weights).
pub const DEFAULT_BITS: u8 = 14;
/// Default exploration: 5 % of `auto` calls.
pub const DEFAULT_EXPLORE_PERMILLE: u32 = 50;
/// Default shadow sampling: off.
pub const DEFAULT_SHADOW_PERMILLE: u32 = 0;

/// An org's learning settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `auto` records carry learning features.
    pub learning: bool,
    /// Exploration share in thousandths.
    pub explore_permille: u32,
    /// Shadow sampling share in thousandths (0: off).
    pub shadow_permille: u32,
    /// Term-hash salt, 16 hex digits.
    pub salt: String,
    /// Hashed term buckets `2^bits`.
    pub bits: u8,
    /// Last change (unix ms).
    pub updated_ms: i64,
}

impl Settings {
    /// The salt as the hashing's number (0 if corrupt: then nothing matches and
    /// learning finds no signal, which the run reports).
    pub fn hashing(&self) -> gaterouter::routing::lexical::Hashing {
        gaterouter::routing::lexical::Hashing {
            bits: self.bits,
            salt: u64::from_str_radix(&self.salt, 16).unwrap_or(0),
        }
    }
}

fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// The org's settings, if it ever set any.
pub async fn settings(db: &Db, org: &str) -> Result<Option<Settings>, DbError> {
    let rows = db
        .fetch(
            "SELECT learning, explore_permille, salt, bits, updated_ms, shadow_permille FROM routing_settings WHERE org = $1",
            &[Param::Text(org.to_owned())],
            "reading routing settings",
        )
        .await?;
    rows.first()
        .map(|r| {
            Ok(Settings {
                learning: get_i64(r, 0)? != 0,
                explore_permille: small(get_i64(r, 1)?),
                salt: get_str(r, 2)?,
                bits: u8::try_from(get_i64(r, 3)?).unwrap_or(DEFAULT_BITS),
                updated_ms: get_i64(r, 4)?,
                shadow_permille: small(get_i64(r, 5)?),
            })
        })
        .transpose()
}

/// Every org with learning turned on.
pub async fn learning_orgs(db: &Db) -> Result<Vec<String>, DbError> {
    let rows = db
        .fetch(
            "SELECT org FROM routing_settings WHERE learning = 1 ORDER BY org",
            &[],
            "listing learning orgs",
        )
        .await?;
    rows.iter().map(|r| get_str(r, 0)).collect()
}

/// Every org with learned weights or a learning run.
pub async fn orgs_with_weights_or_runs(db: &Db) -> Result<Vec<String>, DbError> {
    let rows = db
        .fetch(
            "SELECT org FROM routing_weights UNION SELECT org FROM routing_learn_runs",
            &[],
            "listing orgs with learned weights or runs",
        )
        .await?;
    rows.iter().map(|r| get_str(r, 0)).collect()
}

/// Set an org's learning switch, exploration and shadow sampling; the salt and bits are
/// chosen once, at the first change, and kept (learned weights depend on them).
pub async fn put_settings(
    db: &Db,
    org: &str,
    learning: bool,
    explore_permille: u32,
    shadow_permille: u32,
    now_ms: i64,
) -> Result<Settings, DbError> {
    let salt = format!("{:016x}", rand::random::<u64>());
    db.exec(
        "INSERT INTO routing_settings (org, learning, explore_permille, salt, bits, updated_ms, shadow_permille) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (org) DO UPDATE SET learning = excluded.learning, explore_permille = excluded.explore_permille, updated_ms = excluded.updated_ms, shadow_permille = excluded.shadow_permille",
        &[
            Param::Text(org.to_owned()),
            Param::I64(i64::from(learning)),
            Param::I64(i64::from(explore_permille)),
            Param::Text(salt),
            Param::I64(i64::from(DEFAULT_BITS)),
            Param::I64(now_ms),
            Param::I64(i64::from(shadow_permille)),
        ],
        "storing routing settings",
    )
    .await?;
    settings(db, org).await.and_then(|s| {
        s.ok_or_else(|| DbError {
            op: "reading routing settings back".into(),
            source: sqlx::Error::RowNotFound,
        })
    })
}

/// The active (served) weights of an org (`project` empty) or of one of its projects.
pub async fn active_weights(
    db: &Db,
    org: &str,
    project: &str,
) -> Result<Option<SignedWeights>, DbError> {
    let rows = db
        .fetch(
            "SELECT version, weights_json, created_ms, public_key, signature FROM routing_weights WHERE org = $1 AND project = $2 AND active = 1",
            &[Param::Text(org.to_owned()), Param::Text(project.to_owned())],
            "reading the active routing weights",
        )
        .await?;
    rows.first()
        .map(|r| {
            Ok(SignedWeights {
                version: get_str(r, 0)?,
                weights_json: get_str(r, 1)?,
                issued_at_ms: u64::try_from(get_i64(r, 2)?).unwrap_or(0),
                public_key: get_str(r, 3)?,
                signature: get_str(r, 4)?,
            })
        })
        .transpose()
}

/// The `routing` section of the policy of a key of `org` (bound to `project`, if any):
/// absent when the org never set learning. The weights are the project's own when it has
/// some, else the org's.
pub async fn routing_policy(
    db: &Db,
    org: &str,
    project: Option<&str>,
) -> Result<Option<RoutingPolicy>, DbError> {
    let Some(s) = settings(db, org).await? else {
        return Ok(None);
    };
    let project_weights = match project.filter(|p| !p.is_empty()) {
        Some(p) => active_weights(db, org, p).await?,
        None => None,
    };
    let weights = match project_weights {
        Some(w) => Some(w),
        None => active_weights(db, org, "").await?,
    };
    if !s.learning && weights.is_none() {
        return Ok(None);
    }
    Ok(Some(RoutingPolicy {
        learning: s.learning,
        explore_permille: s.explore_permille,
        shadow_permille: s.shadow_permille,
        salt: s.salt,
        bits: s.bits,
        weights,
    }))
}

/// Insert the learning rows of newly stored `auto` records that carry features (in the
/// ingest transaction).
pub async fn insert_features(
    conn: &mut AnyConnection,
    backend: Backend,
    stored: &[&Verified],
) -> Result<(), DbError> {
    const COLS: usize = 13;
    let mut params = Vec::new();
    for v in stored {
        let Some(r) = &v.rec.route else { continue };
        let (Some(f), Some(p)) = (&r.features, r.propensity_ppm) else {
            continue;
        };
        params.extend([
            Param::Text(v.org().to_owned()),
            Param::Text(v.rec.id.0.clone()),
            Param::I64(i64::try_from(v.rec.ts_start).unwrap_or(i64::MAX)),
            Param::OptText(v.rec.project.clone()),
            Param::OptText(r.tier.clone()),
            Param::Text(format!("{}/{}", v.rec.provider, v.rec.model)),
            Param::I64(i64::from(r.tier.as_deref() == Some("heavy"))),
            Param::I64(p),
            Param::I64(i64::from(r.explored == Some(true))),
            Param::OptText(r.weights.clone()),
            Param::Text(serde_json::to_string(f).unwrap_or_default()),
            Param::OptText(r.shadow_of.as_ref().map(|id| id.0.clone())),
            Param::OptI64(r.model_propensity_ppm),
        ]);
    }
    for chunk in params.chunks(COLS * 500) {
        let sql = format!(
            "INSERT INTO route_features (org, record_id, ts_start, project, tier, model, strong, propensity_ppm, explored, weights, features, shadow_of, model_propensity_ppm) VALUES {} ON CONFLICT DO NOTHING",
            placeholders(chunk.len() / COLS, COLS, backend)
        );
        bind_all(&sql, chunk)
            .execute(&mut *conn)
            .await
            .map_err(dberr("inserting route features"))?;
    }
    Ok(())
}

/// One rated `auto` call of an org, as the learner reads it.
#[derive(Debug, Clone)]
pub struct RatedCall {
    /// Recorded features.
    pub features: gaterouter::usage::RouteFeatures,
    /// Went to the heavy tier.
    pub strong: bool,
    /// Propensity in millionths.
    pub propensity_ppm: i64,
    /// The model that served it (`provider/model`).
    pub model: String,
    /// The probability the router gave that model, in millionths (`None`: not known).
    pub model_propensity_ppm: Option<i64>,
    /// Mean feedback score in `[0, 1]`.
    pub reward: f64,
    /// The request it answered: its own record id, or for a shadow call the record id of
    /// the call it shadows (the two are one request to the learner).
    pub request: String,
}

/// The most recent rated calls that carry features (at most `limit`) of the org, or of
/// one of its projects.
pub async fn rated_calls(
    db: &Db,
    org: &str,
    project: Option<&str>,
    limit: i64,
) -> Result<Vec<RatedCall>, DbError> {
    let mut params = vec![Param::Text(org.to_owned()), Param::I64(limit)];
    let only_project = match project {
        Some(p) => {
            params.push(Param::Text(p.to_owned()));
            " AND f.project = $3"
        }
        None => "",
    };
    let rows = db
        .fetch(
            &format!(
                "SELECT f.features, f.strong, f.propensity_ppm, CAST(SUM(fb.score_milli) AS BIGINT), CAST(COUNT(*) AS BIGINT), COALESCE(f.shadow_of, f.record_id), f.model, f.model_propensity_ppm
                 FROM route_features f JOIN feedback fb ON fb.org = f.org AND fb.record_id = f.record_id
                 WHERE f.org = $1{only_project} GROUP BY f.record_id, f.features, f.strong, f.propensity_ppm, f.ts_start, f.shadow_of, f.model, f.model_propensity_ppm
                 ORDER BY f.ts_start DESC LIMIT $2"
            ),
            &params,
            "reading rated auto calls",
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let Ok(features) = serde_json::from_str(&get_str(r, 0)?) else {
            continue;
        };
        let n = get_i64(r, 4)?.max(1);
        out.push(RatedCall {
            features,
            strong: get_i64(r, 1)? != 0,
            propensity_ppm: get_i64(r, 2)?,
            reward: (get_i64(r, 3)? as f64 / n as f64 / 1000.0).clamp(0.0, 1.0),
            request: get_str(r, 5)?,
            model: get_str(r, 6)?,
            model_propensity_ppm: get_opt_i64(r, 7)?,
        });
    }
    Ok(out)
}

/// Name of the weights signing key in `collector_secrets`.
const WEIGHTS_KEY: &str = "routing_weights_signing_key";

/// The collector's weights signing key: created on first use and shared (through the
/// database) by every collector on it.
pub async fn signing_key(db: &Db, now_ms: i64) -> Result<ed25519_dalek::SigningKey, DbError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let fresh: [u8; 32] = rand::random();
    db.exec(
        "INSERT INTO collector_secrets (name, value, created_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        &[Param::Text(WEIGHTS_KEY.into()), Param::Text(b64.encode(fresh)), Param::I64(now_ms)],
        "creating the weights signing key",
    )
    .await?;
    let rows = db
        .fetch(
            "SELECT value FROM collector_secrets WHERE name = $1",
            &[Param::Text(WEIGHTS_KEY.into())],
            "reading the weights signing key",
        )
        .await?;
    let corrupt = || DbError {
        op: "decoding the weights signing key".into(),
        source: sqlx::Error::Decode("collector_secrets: not 32 bytes of base64".into()),
    };
    let v = rows.first().ok_or_else(corrupt)?;
    let bytes: [u8; 32] = b64
        .decode(get_str(v, 0)?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&bytes))
}

/// The public half of [`signing_key`], standard base64 (what `[policy]
/// weights_public_key` pins).
pub fn public_key_b64(key: &ed25519_dalek::SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes())
}

/// Sign weights for an org.
pub fn sign(
    key: &ed25519_dalek::SigningKey,
    org: &str,
    version: &str,
    issued_at_ms: u64,
    weights_json: &str,
) -> SignedWeights {
    use ed25519_dalek::Signer as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = key.sign(&SignedWeights::signed_bytes(
        org,
        version,
        issued_at_ms,
        weights_json,
    ));
    SignedWeights {
        version: version.to_owned(),
        weights_json: weights_json.to_owned(),
        issued_at_ms,
        public_key: public_key_b64(key),
        signature: b64.encode(sig.to_bytes()),
    }
}

/// The projects of `org` with at least `min` rated calls carrying features, and how many.
pub async fn projects_with_outcomes(
    db: &Db,
    org: &str,
    min: i64,
) -> Result<Vec<(String, i64)>, DbError> {
    let rows = db
        .fetch(
            "SELECT f.project, CAST(COUNT(DISTINCT f.record_id) AS BIGINT) FROM route_features f
             JOIN feedback fb ON fb.org = f.org AND fb.record_id = f.record_id
             WHERE f.org = $1 AND f.project IS NOT NULL AND f.project <> ''
             GROUP BY f.project HAVING COUNT(DISTINCT f.record_id) >= $2 ORDER BY f.project",
            &[Param::Text(org.to_owned()), Param::I64(min)],
            "counting rated calls per project",
        )
        .await?;
    rows.iter()
        .map(|r| Ok((get_str(r, 0)?, get_i64(r, 1)?)))
        .collect()
}

/// Record a learning run of the org (`project` empty) or of one of its projects and, when
/// `promoted`, make those weights the active ones of that org or project (one transaction).
pub async fn record_run(
    db: &Db,
    org: &str,
    project: &str,
    at_ms: i64,
    outcomes: usize,
    report: &Value,
    promoted: Option<&SignedWeights>,
) -> Result<(), DbError> {
    let _g = db.write_guard().await;
    let mut tx = db.begin_write().await?;
    let report_text = report.to_string();
    if let Some(w) = promoted {
        bind_all(
            "UPDATE routing_weights SET active = 0 WHERE org = $1 AND project = $2",
            &[Param::Text(org.to_owned()), Param::Text(project.to_owned())],
        )
        .execute(&mut *tx)
        .await
        .map_err(dberr("retiring routing weights"))?;
        bind_all(
            "INSERT INTO routing_weights (org, version, created_ms, weights_json, signature, public_key, report, active, project) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)
             ON CONFLICT (org, version) DO UPDATE SET active = 1",
            &[
                Param::Text(org.to_owned()),
                Param::Text(w.version.clone()),
                Param::I64(at_ms),
                Param::Text(w.weights_json.clone()),
                Param::Text(w.signature.clone()),
                Param::Text(w.public_key.clone()),
                Param::Text(report_text.clone()),
                Param::Text(project.to_owned()),
            ],
        )
        .execute(&mut *tx)
        .await
        .map_err(dberr("storing routing weights"))?;
    }
    bind_all(
        "INSERT INTO routing_learn_runs (org, at_ms, outcomes, promoted, version, report, project) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            Param::Text(org.to_owned()),
            Param::I64(at_ms),
            Param::I64(i64::try_from(outcomes).unwrap_or(i64::MAX)),
            Param::I64(i64::from(promoted.is_some())),
            Param::OptText(promoted.map(|w| w.version.clone())),
            Param::Text(report_text),
            Param::Text(project.to_owned()),
        ],
    )
    .execute(&mut *tx)
    .await
    .map_err(dberr("recording a learning run"))?;
    tx.commit()
        .await
        .map_err(dberr("committing a learning run"))
}

/// Serve `version`, one of the stored versions of `org` / `project` (empty: the org's
/// own), as that scope's weights, or none (`None`: the org's keys then use their own
/// weights, a project's keys the org's). One transaction. `false`: `version` is not a
/// stored version of that scope, and nothing changed (the transaction is dropped).
pub async fn activate(
    db: &Db,
    org: &str,
    project: &str,
    version: Option<&str>,
) -> Result<bool, DbError> {
    let _g = db.write_guard().await;
    let mut tx = db.begin_write().await?;
    let mut params = vec![Param::Text(org.to_owned()), Param::Text(project.to_owned())];
    bind_all(
        "UPDATE routing_weights SET active = 0 WHERE org = $1 AND project = $2",
        &params,
    )
    .execute(&mut *tx)
    .await
    .map_err(dberr("retiring routing weights"))?;
    if let Some(v) = version {
        params.push(Param::Text(v.to_owned()));
        let r = bind_all(
            "UPDATE routing_weights SET active = 1 WHERE org = $1 AND project = $2 AND version = $3",
            &params,
        )
        .execute(&mut *tx)
        .await
        .map_err(dberr("activating routing weights"))?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
    }
    tx.commit()
        .await
        .map_err(dberr("committing routing weights activation"))?;
    Ok(true)
}

/// The org's weights versions (its own and its projects'), newest first: version,
/// project (`null`: the org's), created, active, the report.
pub async fn weights_history(db: &Db, org: &str) -> Result<Vec<Value>, DbError> {
    let rows = db
        .fetch(
            "SELECT version, created_ms, active, report, project FROM routing_weights WHERE org = $1 ORDER BY created_ms DESC, project LIMIT 100",
            &[Param::Text(org.to_owned())],
            "reading routing weights history",
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(serde_json::json!({
                "version": get_str(r, 0)?,
                "project": Some(get_str(r, 4)?).filter(|p| !p.is_empty()),
                "created_ms": get_i64(r, 1)?,
                "active": get_i64(r, 2)? != 0,
                "report": serde_json::from_str::<Value>(&get_str(r, 3)?).unwrap_or(Value::Null),
            }))
        })
        .collect()
}

/// The active weights version of each of the org's projects that has its own.
pub async fn active_project_versions(
    db: &Db,
    org: &str,
) -> Result<serde_json::Map<String, Value>, DbError> {
    let rows = db
        .fetch(
            "SELECT project, version FROM routing_weights WHERE org = $1 AND project <> '' AND active = 1 ORDER BY project",
            &[Param::Text(org.to_owned())],
            "reading the projects' active routing weights",
        )
        .await?;
    rows.iter()
        .map(|r| Ok((get_str(r, 0)?, Value::String(get_str(r, 1)?))))
        .collect()
}

/// The org's latest learning runs, newest first.
pub async fn learn_runs(db: &Db, org: &str, limit: i64) -> Result<Vec<Value>, DbError> {
    let rows = db
        .fetch(
            "SELECT at_ms, outcomes, promoted, version, report, project FROM routing_learn_runs WHERE org = $1 ORDER BY at_ms DESC, project LIMIT $2",
            &[Param::Text(org.to_owned()), Param::I64(limit)],
            "reading learning runs",
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(serde_json::json!({
                "at_ms": get_i64(r, 0)?,
                "project": Some(get_str(r, 5)?).filter(|p| !p.is_empty()),
                "outcomes": get_i64(r, 1)?,
                "promoted": get_i64(r, 2)? != 0,
                "version": get_opt_str(r, 3)?,
                "report": serde_json::from_str::<Value>(&get_str(r, 4)?).unwrap_or(Value::Null),
            }))
        })
        .collect()
}

/// Does org `org` exist?
pub async fn org_exists(db: &Db, org: &str) -> Result<bool, DbError> {
    let rows = db
        .fetch(
            "SELECT id FROM orgs WHERE id = $1",
            &[Param::Text(org.to_owned())],
            "looking up an org",
        )
        .await?;
    Ok(!rows.is_empty())
}

/// (calls with route features, of which explored) of `org`.
pub async fn feature_counts(db: &Db, org: &str) -> Result<(i64, i64), DbError> {
    let counts = db
        .fetch(
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(explored), 0) AS BIGINT) FROM route_features WHERE org = $1",
            &[Param::Text(org.to_owned())],
            "counting route features",
        )
        .await?;
    match counts.first() {
        Some(r) => Ok((get_i64(r, 0)?, get_i64(r, 1)?)),
        None => Ok((0, 0)),
    }
}

/// When the last learning run of `org` was, if any.
pub async fn last_run_ms(db: &Db, org: &str) -> Result<Option<i64>, DbError> {
    let last = db
        .fetch(
            "SELECT MAX(at_ms) FROM routing_learn_runs WHERE org = $1",
            &[Param::Text(org.to_owned())],
            "reading the last learning run",
        )
        .await?;
    Ok(last
        .first()
        .and_then(|r| crate::db::get_opt_i64(r, 0).ok().flatten()))
}
