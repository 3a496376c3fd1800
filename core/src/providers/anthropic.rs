//! Anthropic adapter (placeholder until implemented).

use http::HeaderMap;

use super::{Adapter, HttpCall, StreamDecoder, Target};
use crate::error::{Error, Result};
use crate::types::{ChatRequest, ChatResponse};

/// The Anthropic wire format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

fn unimplemented_adapter() -> Error {
    Error::config("providers", "the anthropic adapter is not implemented yet", "use another provider")
}

impl Adapter for Anthropic {
    fn build_request(&self, _req: &ChatRequest, _target: &Target, _stream: bool) -> Result<HttpCall> {
        Err(unimplemented_adapter())
    }
    fn parse_response(&self, _body: &[u8], _target: &Target) -> Result<ChatResponse> {
        Err(unimplemented_adapter())
    }
    fn parse_error(&self, _status: u16, _headers: &HeaderMap, _body: &[u8], _target: &Target) -> Error {
        unimplemented_adapter()
    }
    fn stream_decoder(&self, _target: &Target) -> Box<dyn StreamDecoder> {
        unimplemented!("anthropic stream decoder")
    }
}
