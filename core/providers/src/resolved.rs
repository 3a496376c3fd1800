//! What an adapter is given about a provider: its wire format ([`ProviderKind`]) and its
//! config entry with every field resolved ([`ResolvedProvider`]). The config layer
//! (`gaterouter::config`) parses and resolves them; `gaterouter::config` re-exports both.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use gaterouter_types::error::{Error, Result};
use gaterouter_types::secret::Secret;

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions, and every OpenAI-compatible host.
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini `generateContent`.
    Gemini,
}

impl ProviderKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A provider after merging the built-ins with the config: every field resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedProvider {
    /// Config name (`openai`, `deepseek`, `my-vllm`).
    pub name: String,
    /// Wire format.
    pub kind: ProviderKind,
    /// Parsed, validated base URL without a trailing slash.
    pub base_url: String,
    /// Inline key, if given.
    pub api_key: Option<Secret>,
    /// Environment variable for the key, if any.
    pub api_key_env: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Anthropic API version.
    pub api_version: String,
    /// Request timeout.
    pub request_timeout: Duration,
}

impl ResolvedProvider {
    /// The API key: inline, else from the environment. `Ok(None)` for providers that
    /// need none (a local Ollama). A named but unset variable is a config error.
    pub fn api_key(&self) -> Result<Option<Secret>> {
        if let Some(k) = &self.api_key {
            return Ok(Some(k.clone()));
        }
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                _ => Err(Error::config(
                    format!("providers.{}.api_key_env", self.name),
                    format!(
                        "environment variable {var} is not set (provider `{}` needs an API key)",
                        self.name
                    ),
                    format!(
                        "export {var}=..., or set api_key_env / api_key in [providers.{}]",
                        self.name
                    ),
                )),
            },
        }
    }
}
