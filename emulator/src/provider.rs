//! The emulated provider flavours and their names.

/// The emulated provider flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum Provider {
    /// OpenAI Chat Completions.
    OpenAi,
    /// DeepSeek's OpenAI-compatible API.
    DeepSeek,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini generateContent.
    Gemini,
}

impl Provider {
    /// The name used in stats, the request log and the fault queue.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Parses a provider name.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}
