//! `provider/model` names.
//!
//! The provider part names an entry of `[providers]` in the config; the model part is
//! sent to that provider as is and may itself contain `/` (e.g.
//! `together/meta-llama/Llama-3.3-70B-Instruct-Turbo`). `auto` asks the router to choose.

use std::fmt;

use crate::error::{Error, Result};

/// The model name that asks the router to choose.
pub const AUTO: &str = "auto";

/// A parsed `provider/model` name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId {
    /// Config name of the provider (`openai`, `anthropic`, `my-vllm`...).
    pub provider: String,
    /// The provider's own model name.
    pub model: String,
}

impl ModelId {
    /// Parse `provider/model`; the error says what a valid name looks like.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once('/') {
            Some((p, m)) if !p.is_empty() && !m.is_empty() && !p.contains(char::is_whitespace) => {
                Ok(ModelId {
                    provider: p.to_owned(),
                    model: m.to_owned(),
                })
            }
            _ => Err(Error::InvalidRequest {
                field: Some("model".into()),
                message: format!(
                    "model `{s}` is not of the form `provider/model`: use e.g. `openai/gpt-4o-mini`, `anthropic/claude-sonnet-4-5`, `gemini/gemini-2.5-flash`, or `auto`"
                ),
            }),
        }
    }

    /// Whether `s` asks for routing.
    pub fn is_auto(s: &str) -> bool {
        s == AUTO
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

impl std::str::FromStr for ModelId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_model_names() {
        let id = ModelId::parse("together/meta-llama/Llama-3.3-70B").unwrap();
        assert_eq!(id.provider, "together");
        assert_eq!(id.model, "meta-llama/Llama-3.3-70B");
        assert_eq!(id.to_string(), "together/meta-llama/Llama-3.3-70B");
    }

    #[test]
    fn rejects_bare_names() {
        for bad in ["gpt-4o", "/x", "x/", ""] {
            let e = ModelId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("provider/model"), "{e}");
        }
    }
}
