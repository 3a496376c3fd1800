//! Gemini generateContent: shapes, SSE, tools, limits, implicit caching, thoughts, auth.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{json_of, long_text, parse_sse, start, tok};

fn user(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

#[tokio::test]
async fn non_streaming_shape_and_routes() {
    let c = start().await;
    let (s, v) = json_of(
        c.gemini("gemini-2.0-flash", false, user("Hello Gemini"))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    let cand = &v["candidates"][0];
    assert_eq!(cand["content"]["role"], "model");
    let text = "Emulated reply from gemini-2.0-flash: Hello Gemini";
    assert_eq!(cand["content"]["parts"], json!([{"text": text}]));
    assert_eq!(cand["finishReason"], "STOP");
    let u = &v["usageMetadata"];
    let prompt = 3 + 4 + tok("Hello Gemini");
    assert_eq!(u["promptTokenCount"], prompt);
    assert_eq!(u["candidatesTokenCount"], tok(text));
    assert_eq!(u["totalTokenCount"], prompt + tok(text));
    assert!(u.get("thoughtsTokenCount").is_none());
    assert_eq!(v["modelVersion"], "gemini-2.0-flash");
    assert!(v["responseId"].as_str().is_some());

    // Same API without the /gemini prefix, v1 and v1beta, key in the query.
    for path in [
        "/v1beta/models/gemini-2.0-flash:generateContent?key=AIza",
        "/v1/models/gemini-2.0-flash:generateContent?key=AIza",
    ] {
        let r = c
            .client
            .post(c.url(path))
            .json(&user("Hello Gemini"))
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(v["candidates"][0]["content"]["parts"][0]["text"], text);
    }
}

#[tokio::test]
async fn sse_stream_and_json_array_stream() {
    let c = start().await;
    let r = c
        .gemini(
            "gemini-2.0-flash",
            true,
            user("Stream this text for me please"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&r.text().await.unwrap());
    assert!(events.len() >= 3);
    let chunks: Vec<Value> = events
        .iter()
        .map(|e| {
            assert!(e.event.is_none());
            e.json()
        })
        .collect();
    let text: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        text,
        "Emulated reply from gemini-2.0-flash: Stream this text for me please"
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], tok(&text));
    // usageMetadata on every chunk, cumulative: candidatesTokenCount never decreases.
    let counts: Vec<u64> = chunks
        .iter()
        .map(|c| c["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(counts[0] < *counts.last().unwrap());
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["candidates"][0].get("finishReason").is_none())
    );

    let r = c
        .client
        .post(c.url("/v1beta/models/gemini-2.0-flash:streamGenerateContent"))
        .header("x-goog-api-key", "k")
        .json(&user("Stream this text for me please"))
        .send()
        .await
        .unwrap();
    let (_, v) = json_of(r).await;
    assert_eq!(v.as_array().unwrap().len(), chunks.len());
}

#[tokio::test]
async fn function_calling() {
    let c = start().await;
    let tools = json!([{"functionDeclarations": [{"name": "find_place", "description": "d",
        "parameters": {"type": "OBJECT", "properties": {"query": {"type": "STRING"}, "limit": {"type": "INTEGER"},
            "kind": {"type": "STRING", "enum": ["cafe", "bar"]}}, "required": ["query", "limit", "kind"]}}]}]);
    let mut body = user("Find a cafe");
    body["tools"] = tools.clone();
    let (_, v) = json_of(c.gemini("gemini-2.0-flash", false, body.clone()).await).await;
    let cand = &v["candidates"][0];
    assert_eq!(cand["finishReason"], "STOP");
    assert_eq!(
        cand["content"]["parts"][0]["functionCall"],
        json!({"name": "find_place", "args": {"query": "example", "limit": 1, "kind": "cafe"}})
    );
    let events = parse_sse(
        &c.gemini("gemini-2.0-flash", true, body)
            .await
            .text()
            .await
            .unwrap(),
    );
    let last = events.last().unwrap().json();
    assert_eq!(
        last["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "find_place"
    );

    let mut body = json!({"contents": [
        {"role": "user", "parts": [{"text": "Find a cafe"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "find_place", "args": {"query": "cafe"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "find_place", "response": {"result": "Cafe Luna"}}}]}]});
    body["tools"] = tools.clone();
    let (_, v) = json_of(c.gemini("gemini-2.0-flash", false, body).await).await;
    let t = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(t.contains("received tool result"), "{t}");
    assert!(t.contains("Cafe Luna"));

    let mut body = user("Find a cafe");
    body["tools"] = tools;
    body["toolConfig"] = json!({"functionCallingConfig": {"mode": "NONE"}});
    let (_, v) = json_of(c.gemini("gemini-2.0-flash", false, body).await).await;
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string());
}

#[tokio::test]
async fn max_output_tokens_stop_and_json() {
    let c = start().await;
    let mut body = user("A long question indeed");
    body["generationConfig"] = json!({"maxOutputTokens": 2});
    let (_, v) = json_of(c.gemini("gemini-2.0-flash", false, body).await).await;
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "Emulated"
    );
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 2);

    let mut body = user("alpha STOP beta");
    body["generationConfig"] = json!({"stopSequences": ["STOP"]});
    let (_, v) = json_of(c.gemini("gemini-2.0-flash", false, body).await).await;
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "Emulated reply from gemini-2.0-flash: alpha "
    );

    let mut body = user("json please");
    body["generationConfig"] = json!({"responseMimeType": "application/json"});
    let (_, v) = json_of(c.gemini("gemini-2.0-flash", false, body).await).await;
    let t: Value = serde_json::from_str(
        v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(t.is_object());
    let mut body = user("json please");
    body["generationConfig"] = json!({"responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}}});
    let (_, v) = json_of(c.gemini("gemini-2.0-flash", false, body).await).await;
    let t: Value = serde_json::from_str(
        v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(t, json!({"ok": true}));
}

#[tokio::test]
async fn thoughts_tokens() {
    let c = start().await;
    let (_, v) = json_of(c.gemini("gemini-2.5-flash", false, user("Think")).await).await;
    let u = &v["usageMetadata"];
    let thoughts = u["thoughtsTokenCount"].as_u64().unwrap();
    assert!(thoughts > 0);
    assert_eq!(
        u["totalTokenCount"].as_u64().unwrap(),
        u["promptTokenCount"].as_u64().unwrap()
            + u["candidatesTokenCount"].as_u64().unwrap()
            + thoughts
    );
    assert_eq!(
        v["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let mut body = user("Think");
    body["generationConfig"] = json!({"thinkingConfig": {"thinkingBudget": 0}});
    let (_, v) = json_of(c.gemini("gemini-2.5-flash", false, body).await).await;
    assert!(v["usageMetadata"].get("thoughtsTokenCount").is_none());

    let mut body = user("Think");
    body["generationConfig"] =
        json!({"thinkingConfig": {"thinkingBudget": 5, "includeThoughts": true}});
    let (_, v) = json_of(c.gemini("gemini-2.5-pro", false, body).await).await;
    assert_eq!(v["usageMetadata"]["thoughtsTokenCount"], 5);
    assert_eq!(v["candidates"][0]["content"]["parts"][0]["thought"], true);
}

#[tokio::test]
async fn implicit_caching() {
    let c = start().await;
    let mut body = user("question");
    body["systemInstruction"] = json!({"parts": [{"text": long_text(6000)}]});
    let (_, v1) = json_of(c.gemini("gemini-2.5-flash", false, body.clone()).await).await;
    assert!(v1["usageMetadata"].get("cachedContentTokenCount").is_none());
    let (_, v2) = json_of(c.gemini("gemini-2.5-flash", false, body).await).await;
    let u = &v2["usageMetadata"];
    assert_eq!(u["cachedContentTokenCount"], u["promptTokenCount"]);
}

#[tokio::test]
async fn auth_and_validation_errors() {
    let c = start().await;
    let r = c
        .client
        .post(c.url("/v1beta/models/gemini-2.0-flash:generateContent"))
        .json(&user("x"))
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], 401);
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    let r = c
        .client
        .post(c.url("/v1beta/models/gemini-2.0-flash:generateContent?key=bad123"))
        .json(&user("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (s, v) = json_of(
        c.gemini("gemini-2.0-flash", false, json!({"contents": []}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    let (s, _) = json_of(
        c.gemini(
            "gemini-2.0-flash",
            false,
            json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn count_tokens_matches_usage() {
    let c = start().await;
    let r = c
        .client
        .post(c.url("/v1beta/models/gemini-2.0-flash:countTokens"))
        .header("x-goog-api-key", "k")
        .json(&user("Count these tokens"))
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!(s, 200);
    let (_, full) = json_of(
        c.gemini("gemini-2.0-flash", false, user("Count these tokens"))
            .await,
    )
    .await;
    assert_eq!(v["totalTokens"], full["usageMetadata"]["promptTokenCount"]);
}
