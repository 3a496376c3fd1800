//! Counting a whole chat request the way the provider bills its prompt.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::image::{
    GEMINI_IMAGE_TOKENS, anthropic_image_tokens, image_dims_from_data_url, openai_image_rule,
    openai_image_tokens,
};
use crate::count::{EstimatorFamily, TokenizerChoice, encoding_for_model, split_model};
use gaterouter_types::types::{ChatRequest, ContentPart, ImageDetail, ResponseFormat, Tool};

/// Size assumed for an image given by `https://` URL, whose size we cannot know without
/// fetching it: 1024x1024 (765 tokens on gpt-4o high detail, 1,399 on Claude).
pub const UNKNOWN_IMAGE_ASSUMED_DIMS: (u32, u32) = (1024, 1024);

/// Where the prompt tokens of a request come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromptBreakdown {
    /// Message text: content, text parts, tool-call names and arguments, tool results.
    pub text: u64,
    /// Chat formatting: per-message overhead, role names, reply priming.
    pub overhead: u64,
    /// Participant `name` fields and their extra token.
    pub names: u64,
    /// Tool (function) definitions, tool_choice and a JSON-schema response format.
    pub tools: u64,
    /// Images.
    pub images: u64,
    /// Images whose size was unknown (URLs) and were counted at [`UNKNOWN_IMAGE_ASSUMED_DIMS`].
    pub images_assumed: u32,
}

/// The billed prompt tokens of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptCount {
    /// Total prompt tokens.
    pub tokens: u64,
    /// True when every part was counted with the model's real tokenizer and a published
    /// formula (OpenAI text-only requests; tool definitions and URL images make it false).
    pub exact: bool,
    /// Where the tokens come from.
    pub breakdown: PromptBreakdown,
}

/// OpenAI chat format: every message costs 3 tokens plus its role, a `name` costs one
/// more, and the reply is primed with 3 (OpenAI cookbook, "How to count tokens").
const PER_MESSAGE: u64 = 3;
const PER_NAME: u64 = 1;
const REPLY_PRIMING: u64 = 3;

/// Which image formula applies.
#[derive(Clone, Copy)]
enum ImageRule {
    OpenAi(super::image::OpenAiImageRule),
    Anthropic,
    Gemini,
}

/// Prompt tokens of `req` as billed by `model` (`provider/model`).
///
/// - OpenAI models: exact text with the model's encoding, plus the published chat
///   overhead (3 per message + the role + 1 per name + 3 reply priming); tool
///   definitions with the cookbook's function-formatting approximation
///   (`openai_tools_tokens`); images with the tile or patch formula.
/// - Other families: the same structure with estimated text; Claude adds its tool-use
///   system prompt (346 tokens) when tools are given and uses `w*h/750` per image;
///   Gemini uses 258 per image.
pub fn count_request(req: &ChatRequest, model: &str) -> PromptCount {
    count_request_with(req, model, Counting::Tokenizer)
}

/// How text is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    /// The model's real tokenizer (OpenAI) or its calibrated estimator (others).
    #[default]
    Tokenizer,
    /// The one-pass estimate of [`super::fast`]: no BPE, a few percent of error
    /// (never exact), about 20x faster on text not counted before.
    Fast,
}

/// A tokenizer choice and a counting mode.
#[derive(Clone, Copy)]
struct Counter {
    choice: TokenizerChoice,
    fast: bool,
}

impl Counter {
    fn count(self, text: &str) -> u64 {
        if !self.fast {
            return self.choice.count(text);
        }
        match self.choice {
            TokenizerChoice::Exact(enc) => super::fast::estimate(text, enc),
            TokenizerChoice::Estimate(family) => {
                let (other, cjk) =
                    super::fast::estimate_milli(text, crate::count::Encoding::O200kBase);
                let (of, cf) = family.factors_per_mille();
                other
                    .saturating_mul(of)
                    .saturating_add(cjk.saturating_mul(cf))
                    .div_ceil(1_000_000)
            }
        }
    }
    fn count_role(self, role: gaterouter_types::types::Role) -> u64 {
        if self.fast {
            self.count(role.as_str()).max(1)
        } else {
            self.choice.count_role(role)
        }
    }
}

/// [`count_request`] with a choice of [`Counting`].
pub fn count_request_with(req: &ChatRequest, model: &str, counting: Counting) -> PromptCount {
    let choice = encoding_for_model(model);
    let fast = counting == Counting::Fast;
    let counter = Counter { choice, fast };
    let (_, name) = split_model(model);
    let rule = match choice {
        TokenizerChoice::Estimate(EstimatorFamily::Claude) => ImageRule::Anthropic,
        TokenizerChoice::Estimate(EstimatorFamily::Gemini) => ImageRule::Gemini,
        _ => ImageRule::OpenAi(openai_image_rule(&name)),
    };
    let mut b = PromptBreakdown::default();
    let mut exact = choice.is_exact() && !fast;
    for m in &req.messages {
        b.overhead += PER_MESSAGE + counter.count_role(m.role);
        if let Some(n) = &m.name {
            b.names += counter.count(n) + PER_NAME;
        }
        if let Some(content) = &m.content {
            match content {
                gaterouter_types::types::Content::Text(t) => b.text += counter.count(t),
                gaterouter_types::types::Content::Parts(parts) => {
                    for p in parts {
                        match p {
                            ContentPart::Text { text } => b.text += counter.count(text),
                            ContentPart::ImageUrl { image_url } => {
                                let dims = image_dims_from_data_url(&image_url.url);
                                let (w, h) = match dims {
                                    Some(d) => (d.width, d.height),
                                    None => {
                                        b.images_assumed += 1;
                                        exact = false;
                                        UNKNOWN_IMAGE_ASSUMED_DIMS
                                    }
                                };
                                b.images += match rule {
                                    ImageRule::OpenAi(r) => openai_image_tokens(
                                        r,
                                        w,
                                        h,
                                        image_url.detail == ImageDetail::Low,
                                    ),
                                    ImageRule::Anthropic => anthropic_image_tokens(w, h),
                                    ImageRule::Gemini => GEMINI_IMAGE_TOKENS,
                                };
                            }
                        }
                    }
                }
            }
        }
        for tc in &m.tool_calls {
            // Approximation: the function name, its JSON arguments and a few formatting tokens.
            b.text += counter.count(&tc.function.name) + counter.count(&tc.function.arguments) + 3;
            exact = false;
        }
        if let Some(id) = &m.tool_call_id {
            b.text += counter.count(id);
            exact = false;
        }
    }
    b.overhead += REPLY_PRIMING;
    if !req.tools.is_empty() {
        exact = false;
        b.tools += match choice {
            TokenizerChoice::Exact(_) => openai_tools_tokens(&req.tools, counter),
            TokenizerChoice::Estimate(EstimatorFamily::Claude) => {
                // Anthropic's documented tool-use system prompt for Claude 4 models, plus
                // the definitions themselves as JSON.
                346 + json_tokens(
                    &serde_json::to_value(&req.tools).unwrap_or(Value::Null),
                    counter,
                )
            }
            TokenizerChoice::Estimate(_) => openai_tools_tokens(&req.tools, counter),
        };
    }
    if let Some(ResponseFormat::JsonSchema { json_schema }) = &req.response_format {
        exact = false;
        b.tools += counter.count(&json_schema.name) + json_tokens(&json_schema.schema, counter);
    }
    let tokens = b.text + b.overhead + b.names + b.tools + b.images;
    PromptCount {
        tokens,
        exact,
        breakdown: b,
    }
}

fn json_tokens(v: &Value, counter: Counter) -> u64 {
    counter.count(&serde_json::to_string(v).unwrap_or_default())
}

/// Tokens OpenAI adds for function definitions, following the OpenAI cookbook's
/// `num_tokens_for_tools` (which OpenAI notes is an approximation of an undocumented
/// format): 7 per function + `name:description` + 3 if it has properties, then per
/// property 3 + `name:type:description` (+ enum items at 3 each minus 3), + 12 at the end.
fn openai_tools_tokens(tools: &[Tool], choice: Counter) -> u64 {
    const FUNC_INIT: u64 = 7;
    const PROP_INIT: u64 = 3;
    const PROP_KEY: u64 = 3;
    const ENUM_INIT: i64 = -3;
    const ENUM_ITEM: u64 = 3;
    const FUNC_END: u64 = 12;
    let mut n: i64 = 0;
    for t in tools {
        let f = &t.function;
        n += FUNC_INIT as i64;
        let desc = f.description.as_deref().unwrap_or("");
        let desc = desc.strip_suffix('.').unwrap_or(desc);
        n += choice.count(&format!("{}:{}", f.name, desc)) as i64;
        if let Some(props) = f
            .parameters
            .as_ref()
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object)
        {
            if !props.is_empty() {
                n += PROP_INIT as i64;
                for (key, p) in props {
                    n += PROP_KEY as i64;
                    let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
                    let pd = p.get("description").and_then(Value::as_str).unwrap_or("");
                    let pd = pd.strip_suffix('.').unwrap_or(pd);
                    if let Some(items) = p.get("enum").and_then(Value::as_array) {
                        n += ENUM_INIT;
                        for item in items {
                            let s = match item {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            n += ENUM_ITEM as i64 + choice.count(&s) as i64;
                        }
                    }
                    n += choice.count(&format!("{key}:{ty}:{pd}")) as i64;
                }
            }
        }
    }
    n += FUNC_END as i64;
    n.max(0) as u64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gaterouter_types::types::{ImageUrl, Message};

    #[test]
    fn openai_text_request_overhead() {
        // Cookbook: 3 per message + role (1) + content, + 3 priming.
        let req = ChatRequest::new(
            "openai/gpt-4o",
            vec![
                Message::system("You are terse."),
                Message::user("hello world"),
            ],
        );
        let c = count_request(&req, "openai/gpt-4o");
        let text = 4 + 2; // "You are terse." = 4, "hello world" = 2
        assert_eq!(c.breakdown.text, text);
        assert_eq!(c.tokens, text + 2 * (3 + 1) + 3);
        assert!(c.exact);
        let mut named = req.clone();
        named.messages[1].name = Some("bob".into());
        assert_eq!(count_request(&named, "openai/gpt-4o").tokens, c.tokens + 2);
    }

    #[test]
    fn url_images_are_assumed_and_not_exact() {
        let req = ChatRequest::new(
            "openai/gpt-4o",
            vec![Message::user(gaterouter_types::types::Content::Parts(
                vec![ContentPart::ImageUrl {
                    image_url: ImageUrl {
                        url: "https://example.com/a.png".into(),
                        detail: ImageDetail::High,
                    },
                }],
            ))],
        );
        let c = count_request(&req, "openai/gpt-4o");
        assert_eq!(c.breakdown.images, 765);
        assert_eq!(c.breakdown.images_assumed, 1);
        assert!(!c.exact);
        assert_eq!(
            count_request(&req, "gemini/gemini-2.5-flash")
                .breakdown
                .images,
            258
        );
        assert_eq!(
            count_request(&req, "anthropic/claude-haiku-4-5")
                .breakdown
                .images,
            1399
        );
    }

    #[test]
    fn tools_add_tokens() {
        let mut req = ChatRequest::new("openai/gpt-4o", vec![Message::user("weather?")]);
        let base = count_request(&req, "openai/gpt-4o").tokens;
        req.tools.push(Tool::function(
            "get_weather",
            "Get the weather.",
            serde_json::json!({"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["c","f"]}}}),
        ));
        let c = count_request(&req, "openai/gpt-4o");
        assert!(c.breakdown.tools > 20, "{c:?}");
        assert_eq!(c.tokens, base + c.breakdown.tools);
        assert!(!c.exact);
        assert!(
            count_request(&req, "anthropic/claude-sonnet-4-5")
                .breakdown
                .tools
                > 346
        );
    }
}
