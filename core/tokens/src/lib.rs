//! # gaterouter-tokens
//!
//! Token counting: exact for OpenAI models, a calibrated estimate for everyone else.
//! Depends only on `gaterouter-types` (the request it counts) and `gaterouter-tokenizer`
//! (the BPE); `gaterouter` re-exports it as `gaterouter::tokens`.
//!
//! Map of the crate:
//!
//! | module | concept |
//! |---|---|
//! | `count` | encodings ([`Encoding`]), which one a model uses ([`encoding_for_model`]), the per-family estimate ([`EstimatorFamily`]), [`count_text`], the process-wide count memo |
//! | `request` | a whole chat request counted the way OpenAI bills it ([`count_request`]) |
//! | `image` | image dimensions from bytes or a data URL, and each provider's image-token formula |
//! | [`fast`] | the byte-class linear estimate ([`Counting::Fast`]) that needs no tokenizer |
//!
//! - **Exact**: `o200k_base` (gpt-4o*, gpt-4.1*, gpt-4.5*, gpt-5*, o1/o3/o4*, gpt-oss) and
//!   `cl100k_base` (gpt-4, gpt-3.5-turbo, text-embedding-3/ada-002), counted by the
//!   `gaterouter-tokenizer` crate: both vocabularies embedded compactly (no download at run
//!   time, about 3 MB of binary), hashed on first use (about 10 ms), counts identical to
//!   tiktoken's, about 2.4x Python tiktoken on one thread. Figures in `bench/RESULTS.md`.
//! - **Estimated**: Claude, Gemini, DeepSeek, Mistral and unknown models have no public
//!   tokenizer we can embed, so their count is the `o200k_base` count scaled by a
//!   per-family factor (see [`EstimatorFamily`] for the factors, what each was calibrated
//!   against and the measured error).
//!
//! Special-token look-alikes such as `<|endoftext|>` in user text are counted as plain
//! text (as the providers do), and counting never panics on any string.
//!
//! Whole chat requests are counted the way OpenAI bills them by [`count_request`].

mod count;
pub mod fast;
mod image;
mod request;

pub use count::{
    Encoding, EstimatorFamily, PARALLEL_THRESHOLD_BYTES, TokenCount, TokenizerChoice, count_text,
    encoding_for_model, warm_up,
};
pub use image::{ImageDims, ImageFormat, image_dims_from_bytes, image_dims_from_data_url};
pub use request::{
    Counting, PromptBreakdown, PromptCount, UNKNOWN_IMAGE_ASSUMED_DIMS, count_request,
    count_request_with,
};
