//! The normalized chunk stream and the accumulator that folds it into a response.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::decision::RouteDecision;
use crate::error::{Error, Result};
use crate::money::Cost;
use crate::types::{
    AssistantMessage, ChatChunk, ChatResponse, Choice, FinishReason, FunctionCall, Role, ToolCall,
    Usage,
};

/// A stream of normalized chunks. The last item of a successful stream is a chunk with
/// `usage` set; a stream cut short ends with [`Error::StreamInterrupted`].
pub struct ChatStream {
    inner: Pin<Box<dyn Stream<Item = Result<ChatChunk>> + Send>>,
    route: Option<RouteDecision>,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatStream")
    }
}

impl ChatStream {
    /// Wrap any chunk stream.
    pub fn new(inner: impl Stream<Item = Result<ChatChunk>> + Send + 'static) -> Self {
        ChatStream {
            inner: Box::pin(inner),
            route: None,
        }
    }

    /// Wrap a chunk stream produced by this routing decision.
    pub fn with_route(
        inner: impl Stream<Item = Result<ChatChunk>> + Send + 'static,
        route: RouteDecision,
    ) -> Self {
        ChatStream {
            inner: Box::pin(inner),
            route: Some(route),
        }
    }

    /// The routing decision that opened this stream (with the attempts made).
    pub fn route(&self) -> Option<&RouteDecision> {
        self.route.as_ref()
    }

    /// Drain the stream into one response (what `chat` would have returned).
    pub async fn collect_response(mut self) -> Result<ChatResponse> {
        use futures_util::StreamExt;
        let mut acc = StreamAccumulator::default();
        while let Some(chunk) = self.next().await {
            acc.push(&chunk?);
        }
        let mut resp = acc.finish()?;
        resp.route = self.route.take();
        Ok(resp)
    }
}

impl Stream for ChatStream {
    type Item = Result<ChatChunk>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[derive(Debug, Default, Clone)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Folds chunks into a [`ChatResponse`]; used by bindings, usage records and tests.
#[derive(Debug, Default, Clone)]
pub struct StreamAccumulator {
    id: String,
    model: String,
    created: u64,
    text: String,
    saw_text: bool,
    reasoning: String,
    calls: BTreeMap<u32, PartialCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    cost: Option<Cost>,
}

impl StreamAccumulator {
    /// Add one chunk.
    pub fn push(&mut self, chunk: &ChatChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&chunk.id);
            self.model.clone_from(&chunk.model);
            self.created = chunk.created;
        }
        for c in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(t) = &c.delta.content {
                self.text.push_str(t);
                self.saw_text = true;
            }
            if let Some(r) = &c.delta.reasoning_content {
                self.reasoning.push_str(r);
            }
            for tc in &c.delta.tool_calls {
                let call = self.calls.entry(tc.index).or_default();
                if let Some(id) = &tc.id {
                    call.id.clone_from(id);
                }
                if let Some(n) = &tc.function.name {
                    call.name.push_str(n);
                }
                if let Some(a) = &tc.function.arguments {
                    call.arguments.push_str(a);
                }
            }
            if c.finish_reason.is_some() {
                self.finish = c.finish_reason;
            }
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.cost.is_some() {
            self.cost.clone_from(&chunk.cost);
        }
    }

    /// Usage seen so far (set by the last chunk).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The response. Fails if the stream never said why it finished or gave no usage.
    pub fn finish(self) -> Result<ChatResponse> {
        let provider = self.model.split('/').next().unwrap_or("").to_owned();
        let finish_reason = self.finish.ok_or_else(|| Error::StreamInterrupted {
            provider: provider.clone(),
            message: "the stream ended without a finish reason".into(),
        })?;
        let usage = self.usage.ok_or_else(|| Error::StreamInterrupted {
            provider,
            message: "the stream ended without final usage".into(),
        })?;
        let tool_calls = self
            .calls
            .into_values()
            .map(|c| ToolCall {
                id: c.id,
                kind: "function".into(),
                function: FunctionCall {
                    name: c.name,
                    arguments: c.arguments,
                },
            })
            .collect();
        Ok(ChatResponse {
            id: self.id,
            object: "chat.completion".into(),
            created: self.created,
            model: self.model,
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: Role::Assistant,
                    content: self.saw_text.then_some(self.text),
                    tool_calls,
                    reasoning_content: (!self.reasoning.is_empty()).then_some(self.reasoning),
                    refusal: None,
                },
                finish_reason,
            }],
            usage,
            cost: self.cost,
            route: None,
            usage_record_id: None,
            shadow: None,
            shadow_error: None,
        })
    }
}
