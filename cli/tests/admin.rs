//! `gaterouter admin ...` end to end against a `gaterouter collector serve` process:
//! apply examples/org.toml (dry run, then twice: the second changes nothing), export
//! and re-apply, typed errors (bad file, unreachable collector, wrong token; the token
//! is never printed), policy show, budgets, alerts, and the monthly bill as CSV and
//! HTML after ingesting signed records.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use gaterouter::config::Identity;
use gaterouter::usage::signing::wire_json;
use gaterouter::usage::{
    RecordId, RouteInfo, RouteMode, SdkInfo, UsageRecord, UsageRecordInput, UsageSigner,
    unix_ms_now,
};

const BIN: &str = env!("CARGO_BIN_EXE_gaterouter");
const TOKEN: &str = "admin-test-token-5f1c9a0b7e3d2c4a";

/// A collector child process, killed on drop.
struct Collector {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_collector() -> Collector {
    start_collector_named("main")
}

fn start_collector_named(name: &str) -> Collector {
    let dir = std::env::temp_dir().join(format!(
        "gaterouter-admin-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Port 0 and the address from the collector's startup log: picking a free port
    // first and passing it races with other processes taking it meanwhile.
    let mut child = Command::new(BIN)
        .args([
            "collector",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &format!("sqlite://{}", dir.join("c.db").display()),
        ])
        .env("GATEROUTER_COLLECTOR_ADMIN_TOKEN", TOKEN)
        // Set in the same shell for `gaterouter admin`: the collector must not take it as a setting.
        .env("GATEROUTER_COLLECTOR_URL", "http://127.0.0.1:8787")
        .env_remove("GATEROUTER_CONFIG")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        // Keep reading (and dropping) after the address: a full pipe would block the collector.
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("collector did not start (no `collector listening` log line)")
        });
        if let Some(a) = line
            .contains("collector listening")
            .then(|| line.split("addr=").nth(1))
            .flatten()
        {
            break a
                .split_whitespace()
                .next()
                .unwrap()
                .trim_matches('"')
                .to_owned();
        }
    };
    Collector {
        child,
        url: format!("http://{addr}"),
        dir,
    }
}

fn admin(c: &Collector, args: &[&str]) -> (bool, String, String) {
    admin_with(&c.url, TOKEN, args)
}

fn admin_with(url: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out: Output = Command::new(BIN)
        .arg("admin")
        .args(args)
        .env("GATEROUTER_COLLECTOR_URL", url)
        .env("GATEROUTER_ADMIN_TOKEN", token)
        .env_remove("GATEROUTER_CONFIG")
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !o.contains(token) && !e.contains(token),
        "the token was printed: {o}\n{e}"
    );
    (out.status.success(), o, e)
}

fn search_signer() -> UsageSigner {
    UsageSigner::from_seed(&[71; 32])
}
fn helpdesk_signer() -> UsageSigner {
    UsageSigner::from_seed(&[72; 32])
}

/// examples/org.toml with the public keys of two keys replaced by keys this test can sign with.
fn org_file(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/org.toml"))
            .unwrap();
    let doc =
        gaterouter_collector::orgfile::parse(&text, gaterouter_collector::orgfile::Format::Toml)
            .unwrap();
    let mut out = text.clone();
    for k in &doc.keys {
        let pk = k.public_key.as_str();
        let mine = match k.id.as_str() {
            "k_search_prod" => search_signer().public_key().to_string(),
            "k_helpdesk_bot" => helpdesk_signer().public_key().to_string(),
            _ => continue,
        };
        out = out.replace(pk, &mine);
    }
    assert_ne!(out, text);
    let p = dir.join("org.toml");
    std::fs::write(&p, out).unwrap();
    p
}

#[allow(clippy::too_many_arguments)]
fn record(
    key: &str,
    dept: &str,
    project: &str,
    user: Option<&str>,
    model: &str,
    ts: u64,
    prompt: u64,
    completion: u64,
    cost: u64,
    signer: &UsageSigner,
) -> String {
    let ident = Identity {
        org: Some("acme".into()),
        department: Some(dept.into()),
        project: Some(project.into()),
        user: user.map(Into::into),
        api_key_id: Some(key.into()),
        ..Default::default()
    };
    let input = UsageRecordInput {
        ts_start: ts,
        ts_end: ts + 10,
        provider: "openai".into(),
        model: model.into(),
        route: Some(RouteInfo {
            mode: RouteMode::Explicit,
            tier: None,
            score: None,
            ..Default::default()
        }),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_micros: cost,
        latency_ms: 10,
        attempts: 1,
        tags: BTreeMap::new(),
        ..Default::default()
    };
    let r = UsageRecord::build(input, &ident, &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap();
    let (c, sig) = signer.sign_record(&r).unwrap();
    wire_json(&c, &sig)
}

fn ingest(url: &str, wires: &[String]) -> serde_json::Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let body = format!("{{\"records\":[{}]}}", wires.join(","));
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/usage"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    })
}

#[test]
fn admin_commands_against_a_collector() {
    let c = start_collector();
    let file = org_file(&c.dir);
    let f = file.to_str().unwrap();

    // Dry run: the full plan, nothing written.
    let (ok, out, err) = admin(&c, &["apply", f, "--dry-run"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.starts_with("dry run: nothing was written\ncreated: 29\n")
            && out.contains("  budget:project:search/usd/month\n"),
        "{out}"
    );
    let (ok, out, _) = admin(&c, &["apply", f, "--dry-run"]);
    assert!(
        ok && out.contains("created: 29\n"),
        "the dry run wrote nothing: {out}"
    );
    // Apply, then apply again: all unchanged.
    let (ok, out, err) = admin(&c, &["apply", f]);
    assert!(
        ok && out.starts_with("created: 29\n") && out.contains("key:k_search_prod"),
        "{out}\n{err}"
    );
    let (ok, out, _) = admin(&c, &["apply", f]);
    assert!(ok, "{out}");
    assert_eq!(
        out,
        "created: 0\nupdated: 0\nunchanged: 29\nremoved_not_deleted: 0\n"
    );

    // Export and re-apply (TOML and YAML): nothing changes.
    for (fmt, ext) in [("toml", "toml"), ("yaml", "yaml"), ("json", "json")] {
        let (ok, text, err) = admin(&c, &["export", "--org", "acme", "--format", fmt]);
        assert!(ok, "{err}");
        let p = c.dir.join(format!("exported.{ext}"));
        std::fs::write(&p, &text).unwrap();
        let (ok, out, err) = admin(&c, &["apply", p.to_str().unwrap()]);
        assert!(
            ok && out.contains("created: 0\nupdated: 0\nunchanged: 29\n"),
            "{fmt}: {out}\n{err}\n{text}"
        );
    }
    // An entry removed from the file is reported, not deleted.
    let text = std::fs::read_to_string(&file).unwrap();
    let cut = text.find("[[members]]\nid = \"dan\"").unwrap();
    let end = cut + text[cut..].find("\n\n").unwrap();
    let fewer = c.dir.join("fewer.toml");
    std::fs::write(&fewer, format!("{}{}", &text[..cut], &text[end + 2..])).unwrap();
    let (ok, out, _) = admin(&c, &["apply", fewer.to_str().unwrap()]);
    assert!(
        ok && out.contains("removed_not_deleted: 1 (") && out.contains("  user:dan\n"),
        "{out}"
    );

    // Typed errors. A bad file is refused locally, naming the file and the field.
    let bad = c.dir.join("bad.toml");
    std::fs::write(
        &bad,
        text.replacen(
            "max_tokens_per_request = 8192",
            "max_token_per_request = 8192",
            1,
        ),
    )
    .unwrap();
    let (ok, _, err) = admin_with(
        "http://127.0.0.1:1",
        TOKEN,
        &["apply", bad.to_str().unwrap()],
    );
    assert!(
        !ok && err.contains("bad.toml") && err.contains("max_token_per_request"),
        "{err}"
    );
    let (ok, _, err) = admin_with("http://127.0.0.1:1", TOKEN, &["budgets", "--org", "acme"]);
    assert!(
        !ok && err.contains("cannot reach the collector at http://127.0.0.1:1")
            && err.contains("Fix:"),
        "{err}"
    );
    let (ok, _, err) = admin_with(
        &c.url,
        "wrong-token-0000000000",
        &["budgets", "--org", "acme"],
    );
    assert!(
        !ok && err.contains("HTTP 401") && err.contains("GATEROUTER_ADMIN_TOKEN"),
        "{err}"
    );
    let (ok, _, err) = admin(&c, &["export", "--org", "nope"]);
    assert!(
        !ok && err.contains("unknown org `nope`") && err.contains("known: acme"),
        "{err}"
    );
    let (ok, _, err) = admin(&c, &["bill", "--org", "acme", "--month", "2026-1"]);
    assert!(
        !ok && err.contains("HTTP 400") && err.contains("YYYY-MM"),
        "{err}"
    );

    // The effective policy names each rule's level; support's blocked models show.
    let (ok, out, err) = admin(&c, &["policy", "show", "--key", "k_helpdesk_bot"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("key k_helpdesk_bot (org acme, department support, project helpdesk-bot)"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("deny_models")
            && l.contains("openai/gpt-4o ")
            && l.contains("(set at department:support)")),
        "{out}"
    );
    assert!(out.contains("department:support  usd"), "{out}");
    let (ok, out, _) = admin(&c, &["policy", "show", "--key", "k_search_prod", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        ok && v["rules"]["allow_models"]["level"] == "key:k_search_prod",
        "{out}"
    );

    // Usage: search calls this month, and one $500 helpdesk call (an unknown model, so
    // the client's price counts) that crosses support's soft budget at 50%.
    let now = unix_ms_now() - 60_000;
    let mut wires: Vec<String> = (0..5u64)
        .map(|i| {
            record(
                "k_search_prod",
                "eng",
                "search",
                None,
                "gpt-4o-mini",
                now + i,
                10_000 + i,
                1_000,
                2_100,
                &search_signer(),
            )
        })
        .collect();
    wires.push(record(
        "k_helpdesk_bot",
        "support",
        "helpdesk-bot",
        Some("carol"),
        "acme-support-ft",
        now,
        1_000,
        100,
        500_000_000,
        &helpdesk_signer(),
    ));
    let v = ingest(&c.url, &wires);
    assert_eq!(v["accepted"].as_array().unwrap().len(), 6, "{v}");
    let month = {
        let ms = now;
        let m = gaterouter_collector::time::month_of_ms(ms);
        format!("{:04}-{:02}", m / 100, m % 100)
    };

    let (ok, out, _) = admin(&c, &["budgets", "--org", "acme"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("department:support") && l.contains("$500.00")),
        "{out}"
    );
    let (ok, out, _) = admin(&c, &["alerts", "--org", "acme"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.contains("department:support") && l.contains("50%")),
        "{out}"
    );

    // The bill: CSV to stdout, totals reconcile with the JSON form; HTML to a file.
    let (ok, csv, err) = admin(
        &c,
        &[
            "bill", "--org", "acme", "--month", &month, "--format", "csv",
        ],
    );
    assert!(ok, "{err}");
    assert!(csv.starts_with("section,item,calls,"), "{csv}");
    let total: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with("total,org:acme,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(total[2], "6", "{csv}");
    let spend: i64 = total[7].parse().unwrap();
    let models: i64 = csv
        .lines()
        .filter(|l| l.starts_with("model,"))
        .map(|l| l.split(',').nth(7).unwrap().parse::<i64>().unwrap())
        .sum();
    let depts: i64 = csv
        .lines()
        .filter(|l| l.starts_with("department,"))
        .map(|l| l.split(',').nth(7).unwrap().parse::<i64>().unwrap())
        .sum();
    assert!(
        spend > 500_000_000 && models == spend && depts == spend,
        "{csv}"
    );
    let (ok, json, _) = admin(
        &c,
        &[
            "bill", "--org", "acme", "--month", &month, "--format", "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        ok && v["totals"]["spend_micros"].as_i64() == Some(spend),
        "{json}"
    );
    let html = c.dir.join("bill.html");
    let (ok, out, err) = admin(
        &c,
        &[
            "bill",
            "--org",
            "acme",
            "--month",
            &month,
            "--department",
            "eng",
            "--out",
            html.to_str().unwrap(),
        ],
    );
    assert!(
        ok && out.contains("wrote the html bill of department eng"),
        "{out}\n{err}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.starts_with("<!DOCTYPE html>")
            && page.contains("@media print")
            && page.contains("department:eng")
            && page.contains("openai/gpt-4o-mini"),
        "{page}"
    );
    let (ok, _, err) = admin(
        &c,
        &[
            "bill",
            "--org",
            "acme",
            "--month",
            &month,
            "--department",
            "eng",
            "--project",
            "search",
        ],
    );
    assert!(!ok && err.contains("cannot be used with"), "{err}");

    // `gaterouter usage`: the analytics as a table (dollars), CSV or JSON; a department
    // read token sees only its department; no token, an unknown report: clear errors.
    let (ok, out, err) = usage(
        &c.url,
        &[("GATEROUTER_ADMIN_TOKEN", TOKEN)],
        &["breakdown", "--org", "acme", "--by", "department"],
    );
    assert!(ok, "{err}");
    let head: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert!(
        head.starts_with(&["group", "calls"])
            && out.contains("spend ($)")
            && !out.contains("spend_micros"),
        "{out}"
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    };
    assert_eq!(
        row("eng").unwrap_or_else(|| panic!("{out}"))[1],
        "5",
        "{out}"
    );
    assert!(
        row("support")
            .unwrap_or_else(|| panic!("{out}"))
            .iter()
            .any(|c| c.starts_with("500.")),
        "the $500 call shows in dollars: {out}"
    );
    let (ok, mint, err) = admin(
        &c,
        &["tokens", "mint", "--org", "acme", "--department", "eng"],
    );
    assert!(ok, "{err}");
    let eng_token = mint.lines().next().unwrap().trim().to_owned();
    let (ok, out, err) = usage(
        &c.url,
        &[("GATEROUTER_READ_TOKEN", &eng_token)],
        &["breakdown", "--by", "department", "--format", "csv"],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("group,")
            && lines[0].contains("spend_micros")
            && lines.len() == 2
            && lines[1].starts_with("eng,"),
        "the eng token sees eng only: {out}"
    );
    let (ok, out, err) = usage(
        &c.url,
        &[("GATEROUTER_READ_TOKEN", &eng_token)],
        &["summary", "--format", "json"],
    );
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert!(
        ok && v["rows"][0]["calls"] == 5 && v["columns"][0] == "calls",
        "{out}"
    );
    let (ok, _, err) = usage(
        &c.url,
        &[("GATEROUTER_READ_TOKEN", &eng_token)],
        &["breakdown", "--by", "department", "--department", "support"],
    );
    assert!(!ok && err.contains("HTTP 403"), "{err}");
    let (ok, _, err) = usage(&c.url, &[], &["summary"]);
    assert!(
        !ok && err.contains("GATEROUTER_READ_TOKEN") && err.contains("tokens mint"),
        "{err}"
    );
    let (ok, _, err) = usage(&c.url, &[("GATEROUTER_ADMIN_TOKEN", TOKEN)], &["spend"]);
    assert!(
        !ok && err.contains("possible values") && err.contains("breakdown"),
        "{err}"
    );
}

/// Run `gaterouter usage ARGS` against `url` with only the given token variables set.
fn usage(url: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("usage")
        .args(args)
        .env("GATEROUTER_COLLECTOR_URL", url);
    for k in [
        "GATEROUTER_CONFIG",
        "GATEROUTER_ADMIN_TOKEN",
        "GATEROUTER_READ_TOKEN",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    for (_, v) in env {
        assert!(
            !o.contains(v) && !e.contains(v),
            "a token was printed: {o}\n{e}"
        );
    }
    (out.status.success(), o, e)
}

/// The verbs added for issue 17: tokens, keys, members; unknown org/department/key exit
/// non-zero with a clear message; the org-file catalog checks (warning, --strict error).
#[test]
fn tokens_keys_members_and_unknown_names() {
    let c = start_collector_named("verbs");
    let file = org_file(&c.dir);
    let f = file.to_str().unwrap();
    let (ok, out, err) = admin(&c, &["apply", f]);
    assert!(ok, "{out}\n{err}");
    assert!(
        !err.contains("warning"),
        "examples/org.toml passes the catalog checks: {err}"
    );

    // Unknown names: non-zero exit, the name, what exists.
    for args in [
        vec!["budgets", "--org", "nosuch"],
        vec!["alerts", "--org", "nosuch"],
        vec!["bill", "--org", "nosuch", "--month", "2026-11"],
        vec!["tokens", "mint", "--org", "nosuch"],
        vec!["members", "list", "--org", "nosuch"],
        vec!["keys", "list", "--org", "nosuch"],
    ] {
        let (ok, out, err) = admin(&c, &args);
        assert!(
            !ok && err.contains("unknown org `nosuch`") && err.contains("known: acme"),
            "{args:?}: {out}\n{err}"
        );
    }
    let (ok, _, err) = admin(
        &c,
        &[
            "bill",
            "--org",
            "acme",
            "--month",
            "2026-11",
            "--department",
            "nodept",
        ],
    );
    assert!(
        !ok && err.contains("unknown department `nodept` in org `acme`") && err.contains("eng"),
        "{err}"
    );
    let (ok, _, err) = admin(
        &c,
        &["tokens", "mint", "--org", "acme", "--department", "nodept"],
    );
    assert!(!ok && err.contains("unknown department `nodept`"), "{err}");
    let (ok, _, err) = admin(&c, &["policy", "show", "--key", "k_nosuch"]);
    assert!(!ok && err.contains("unknown API key `k_nosuch`"), "{err}");
    for args in [
        vec!["keys", "revoke", "--id", "k_nosuch"],
        vec![
            "keys",
            "rotate",
            "--id",
            "k_nosuch",
            "--out",
            "/nonexistent/x.key",
        ],
    ] {
        let (ok, _, err) = admin(&c, &args);
        assert!(
            !ok && err.contains("unknown API key `k_nosuch`"),
            "{args:?}: {err}"
        );
    }
    let (ok, _, err) = admin(&c, &["tokens", "revoke", "0000-nosuch"]);
    assert!(!ok && err.contains("unknown token `0000-nosuch`"), "{err}");

    // Read tokens: mint (department scope), list, use on the read API, revoke.
    let (ok, out, err) = admin(
        &c,
        &[
            "tokens",
            "mint",
            "--org",
            "acme",
            "--department",
            "eng",
            "--description",
            "eng dashboard",
        ],
    );
    assert!(ok, "{err}");
    let token = out.lines().next().unwrap().trim().to_owned();
    assert!(
        token.len() >= 20
            && out.contains("read token")
            && out.contains("department eng of org acme")
            && out.contains("sign in at http")
            && !out.contains("#token="),
        "{out}"
    );
    let id = out
        .split("read token ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (ok, out, _) = admin(&c, &["tokens", "list", "--org", "acme"]);
    assert!(
        ok && out.contains(&id) && out.contains("acme/eng") && out.contains("eng dashboard"),
        "{out}"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let read = |t: &str| {
        rt.block_on(async {
            let url = format!(
                "{}/v1/admin/bills?org=acme&month=2026-11&department=eng&format=json",
                c.url
            );
            reqwest::Client::new()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(
        read(&token),
        200,
        "the read token reads its department's bill"
    );
    let (ok, out, err) = admin(&c, &["tokens", "revoke", &id]);
    assert!(ok && out.contains("revoked token"), "{out}{err}");
    assert_eq!(read(&token), 401, "a revoked token is refused");
    let (ok, out, _) = admin(&c, &["tokens", "revoke", &id]);
    assert!(ok && out.contains("already revoked"), "{out}");

    // Keys: new (secret file 0600, registered), rotate with an overlap, revoke, list.
    let k1 = c.dir.join("k1.key");
    let (ok, out, err) = admin(
        &c,
        &[
            "keys",
            "new",
            "--id",
            "k_cli",
            "--org",
            "acme",
            "--department",
            "eng",
            "--out",
            k1.to_str().unwrap(),
        ],
    );
    assert!(
        ok && out.contains("registered API key k_cli") && k1.exists(),
        "{out}{err}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&k1).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let (ok, _, err) = admin(
        &c,
        &[
            "keys",
            "new",
            "--id",
            "k_cli2",
            "--org",
            "acme",
            "--project",
            "noproj",
            "--out",
            c.dir.join("k9.key").to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("unknown project `noproj`"), "{err}");
    let k2 = c.dir.join("k2.key");
    let (ok, out, err) = admin(
        &c,
        &[
            "keys",
            "rotate",
            "--id",
            "k_cli",
            "--out",
            k2.to_str().unwrap(),
            "--overlap",
            "2h",
        ],
    );
    assert!(
        ok && out.contains("version 2") && out.contains("overlap 7200 s") && k2.exists(),
        "{out}{err}"
    );
    let (ok, _, err) = admin(
        &c,
        &[
            "keys",
            "rotate",
            "--id",
            "k_cli",
            "--out",
            c.dir.join("k3.key").to_str().unwrap(),
            "--overlap",
            "soon",
        ],
    );
    assert!(!ok && err.contains("not a duration"), "{err}");
    let (ok, out, _) = admin(&c, &["keys", "list", "--org", "acme"]);
    assert!(
        ok && out.lines().any(|l| l.starts_with("k_cli ")
            && l.contains("active")
            && l.contains("department eng")
            && l.contains(" 2 ")),
        "{out}"
    );
    let (ok, out, _) = admin(&c, &["keys", "revoke", "--id", "k_cli"]);
    assert!(ok && out.contains("revoked API key k_cli"), "{out}");
    let (ok, out, _) = admin(&c, &["keys", "list", "--org", "acme"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("k_cli ") && l.contains("revoked")),
        "{out}"
    );
    let (ok, _, err) = admin(
        &c,
        &[
            "keys",
            "rotate",
            "--id",
            "k_cli",
            "--out",
            c.dir.join("k4.key").to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("revoked"), "{err}");

    // Members: list, add (with a group), remove from the group.
    let (ok, out, _) = admin(
        &c,
        &["members", "list", "--org", "acme", "--department", "eng"],
    );
    assert!(
        ok && out.contains("alice") && out.contains("bob") && !out.contains("carol"),
        "{out}"
    );
    let (ok, out, err) = admin(
        &c,
        &[
            "members",
            "add",
            "erin",
            "--org",
            "acme",
            "--department",
            "eng",
            "--group",
            "oncall",
            "--name",
            "Erin",
        ],
    );
    assert!(
        ok && out.contains("added member erin") && out.contains("in group oncall"),
        "{out}{err}"
    );
    let (ok, out, _) = admin(&c, &["members", "list", "--org", "acme"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("erin ") && l.contains("Erin") && l.contains("eng")),
        "{out}"
    );
    let (ok, out, err) = admin(&c, &["members", "remove", "erin", "--group", "oncall"]);
    assert!(
        ok && out.contains("removed member erin from group oncall"),
        "{out}{err}"
    );
    let (ok, _, err) = admin(&c, &["members", "remove", "erin", "--group", "oncall"]);
    assert!(!ok && err.contains("not a member"), "{err}");
    let (ok, _, err) = admin(
        &c,
        &[
            "members", "add", "zed", "--org", "acme", "--group", "nogroup",
        ],
    );
    assert!(!ok && err.contains("unknown group `nogroup`"), "{err}");

    // Catalog checks at apply time: warnings naming the line; --strict refuses.
    let text = std::fs::read_to_string(&file).unwrap();
    let bad = text.replacen("\"gemini/*\"", "\"google/*\"", 1);
    let line = bad.lines().position(|l| l.contains("google/*")).unwrap() + 1;
    let badf = c.dir.join("google.toml");
    std::fs::write(&badf, &bad).unwrap();
    let (ok, _, err) = admin(&c, &["apply", badf.to_str().unwrap(), "--dry-run"]);
    assert!(
        ok && err.contains(&format!("warning: line {line}: org.policy.allow_models"))
            && err.contains("provider `google`"),
        "{err}"
    );
    let (ok, out, err) = admin(&c, &["apply", badf.to_str().unwrap(), "--strict"]);
    assert!(
        !ok && err.contains("error: line")
            && err.contains("nothing was applied (--strict)")
            && out.is_empty(),
        "{out}{err}"
    );
}
