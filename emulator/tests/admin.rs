//! Admin endpoints, the binary, the blocking starter, graceful shutdown and latency.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{json_of, start};

#[tokio::test]
async fn healthz_stats_requests_reset() {
    let c = start().await;
    assert_eq!(c.get_json("/healthz").await, json!({"status": "ok"}));

    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "logged"}]});
    c.openai(body.clone()).await;
    let r = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("bad-key-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    c.anthropic(json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await;
    c.anthropic(json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let r = c
        .client
        .post(c.url("/v1beta/models/gemini-2.0-flash:generateContent?alt=json&key=AIzaSECRET"))
        .header("x-emulator-fault", "server_error")
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    c.deepseek(json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": "d"}]}))
        .await;

    let s = c.get_json("/_emulator/stats").await;
    assert_eq!(s["total"], 6);
    assert_eq!(
        s["by_provider"],
        json!({"openai": 2, "anthropic": 2, "gemini": 1, "deepseek": 1})
    );
    assert_eq!(
        s["by_outcome"],
        json!({"ok": 3, "auth_error": 1, "invalid_request": 1, "fault:server_error": 1})
    );
    assert_eq!(
        s["by_provider_outcome"]["openai"],
        json!({"ok": 1, "auth_error": 1})
    );

    let log = c.get_json("/_emulator/requests").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 6);
    assert_eq!(log[0]["provider"], "openai");
    assert_eq!(log[0]["path"], "/v1/chat/completions");
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["body"], body);
    assert_eq!(log[0]["headers"]["authorization"], "Bearer sk-t***");
    assert_eq!(log[1]["headers"]["authorization"], "Bearer bad-***");
    assert_eq!(log[2]["headers"]["x-api-key"], "sk-a***");
    assert_eq!(log[2]["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(log[4]["provider"], "gemini");
    assert_eq!(log[4]["query"], "alt=json&key=AIza***");
    assert_eq!(log[4]["headers"]["x-emulator-fault"], "server_error");
    assert!(!log.iter().any(|e| e.to_string().contains("SECRET")));
    assert!(log[0]["seq"].as_u64().unwrap() < log[5]["seq"].as_u64().unwrap());

    // Non-JSON bodies are logged raw.
    c.client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("k")
        .body("nope")
        .send()
        .await
        .unwrap();
    let log = c.get_json("/_emulator/requests").await;
    assert_eq!(
        log.as_array().unwrap().last().unwrap()["body"],
        json!({"_raw": "nope"})
    );

    // Reset clears everything, including the id counter and the caches.
    c.client
        .post(c.url("/_emulator/faults"))
        .json(&json!({"fault": "auth"}))
        .send()
        .await
        .unwrap();
    let r = c
        .client
        .post(c.url("/_emulator/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = c.get_json("/_emulator/stats").await;
    assert_eq!(s["total"], 0);
    assert_eq!(s["faults_queued"], 0);
    assert_eq!(c.get_json("/_emulator/requests").await, json!([]));
    let (_, v) = json_of(c.openai(body).await).await;
    assert_eq!(v["id"], "chatcmpl-emu000001");
}

#[tokio::test]
async fn request_log_keeps_last_100() {
    let c = start().await;
    for i in 0..105 {
        c.openai(json!({"model": "m", "messages": [{"role": "user", "content": format!("n{i}")}]}))
            .await;
    }
    let log = c.get_json("/_emulator/requests").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 100);
    assert_eq!(log[0]["body"]["messages"][0]["content"], "n5");
    assert_eq!(log[99]["body"]["messages"][0]["content"], "n104");
}

#[tokio::test]
async fn graceful_shutdown_releases_port() {
    let c = start().await;
    let addr = c.handle.addr();
    assert_eq!(
        c.handle.base_url(),
        format!("http://127.0.0.1:{}", addr.port())
    );
    c.handle.shutdown().await;
    assert!(
        c.client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn blocking_start_for_sync_callers() {
    let h = gaterouter_emulator::start_blocking("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut s = std::net::TcpStream::connect(h.addr()).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"ok\""));
    h.shutdown();
}

#[test]
fn binary_prints_listening_line_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gaterouter-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // Signal handlers are installed before the line is printed: SIGINT right away is clean.
    let mut quick = Command::new(env!("CARGO_BIN_EXE_gaterouter-emulator"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut l2 = String::new();
    BufReader::new(quick.stdout.take().unwrap())
        .read_line(&mut l2)
        .unwrap();
    assert!(l2.starts_with("listening on http://127.0.0.1:"));
    Command::new("kill")
        .args(["-INT", &quick.id().to_string()])
        .status()
        .unwrap();
    assert!(quick.wait().unwrap().success());
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port > 0);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"));
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "emulator did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A keep-alive connection answers streamed requests quickly (no 40 ms delayed-ACK stall per
/// request), and every accepted socket reports TCP_NODELAY.
#[tokio::test]
async fn no_delayed_ack_stall() {
    let c = start().await;
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "latency"}]});
    c.openai(body.clone()).await.text().await.unwrap();
    let t = Instant::now();
    for _ in 0..30 {
        let r = c.openai(body.clone()).await;
        let text = r.text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
    let per = t.elapsed() / 30;
    assert!(
        per < Duration::from_millis(25),
        "mean {per:?} per streamed request"
    );
    // Every accepted socket has TCP_NODELAY; the keep-alive connection was reused.
    let conns = c.get_json("/_emulator/stats").await["connections"].clone();
    let accepted = conns["accepted"].as_u64().unwrap();
    assert!((1..=2).contains(&accepted), "{conns}");
    assert_eq!(conns["nodelay"], conns["accepted"]);
    let v: Value = c
        .openai(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");
}

/// Events spaced a few ms apart must not wait for the client's delayed ACK (Nagle + delayed
/// ACK would add up to 40 ms per event without TCP_NODELAY on the server socket).
#[tokio::test]
async fn spaced_sse_events_are_not_delayed() {
    let c = start().await;
    let body = json!({"model": "m", "stream": true,
        "messages": [{"role": "user", "content": "a reply long enough to be split into many deltas for this test"}]});
    for _ in 0..3 {
        let t = Instant::now();
        let r = c
            .client
            .post(c.url("/v1/chat/completions"))
            .bearer_auth("k")
            .header("x-emulator-fault", "slow_stream;delay_ms=2")
            .json(&body)
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        let n = support::parse_sse(&text).len() as u32;
        assert!(n >= 8);
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(2 * n as u64 + 250),
            "{n} events took {took:?}"
        );
    }
}

#[tokio::test]
async fn in_process_admin_api() {
    let c = start().await;
    let emu = c.handle.emulator();
    assert_eq!(
        emu.queue_fault(&json!({"fault": "server_error", "provider": "openai"}))
            .unwrap(),
        1
    );
    assert!(emu.queue_fault(&json!({"fault": "nope"})).is_err());
    assert!(
        emu.queue_fault(&json!({"fault": "auth", "provider": "mistral"}))
            .is_err()
    );
    let r = c
        .openai(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.status(), 500);
    assert_eq!(emu.stats()["by_outcome"]["fault:server_error"], 1);
    assert_eq!(emu.requests().len(), 1);
    emu.reset();
    assert_eq!(emu.stats()["total"], 0);
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let c = start().await;
    let r = c
        .client
        .post(c.url("/openai/chat/completions"))
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!(s, 404);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/openai/chat/completions")
    );
    let r = c
        .client
        .post(c.url("/v2/models/x:generateContent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
