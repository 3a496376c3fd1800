//! # gaterouter-pricing
//!
//! Price catalog and cost: what a call will cost before it is sent, and what it cost
//! after, from the provider's usage. Depends on `gaterouter-types` (usage, money, the
//! request) and `gaterouter-tokens` (the prompt count of an estimate); `gaterouter`
//! re-exports it as `gaterouter::pricing`.
//!
//! Map of the crate:
//!
//! | module | items | concept |
//! |---|---|---|
//! | `catalog` | [`Catalog`] | the versioned price list: [`Catalog::builtin`], a file's, overrides applied |
//! | `price` | [`Price`] | micro-dollars per million tokens, parsed and checked |
//! | `model` | [`ModelPrice`], [`PriceTier`], [`Capabilities`] | what one model costs and can do |
//! | `model`, `catalog` | [`ModelPriceOverride`], [`validate_overrides`] | `[prices."provider/model"]` from the config |
//! | `catalog` | [`cost`], [`Cost`] | the exact cost of a call's usage |
//! | `catalog` | [`estimate_cost`], [`CostEstimate`] | the expected and maximum cost before a call |
//!
//! - Prices live in `core/pricing/data/prices.json` (embedded; see [`Catalog::builtin`]) as
//!   decimal strings in USD per million tokens and are held as integer
//!   **micro-dollars per million tokens** ([`Price`]), which is the same number as
//!   pico-dollars per token. No float ever touches money.
//! - A cost is computed exactly in units of 1/100 pico-dollar (so a batch percentage
//!   discount stays exact). The total is the exact sum rounded half-up to micro-dollars
//!   once; the components are then allocated by largest remainder (each gets its floor,
//!   the micro-dollars left go one each to the components with the largest fractional
//!   parts, ties to the earlier one), so they always add up to `total_micros` exactly and
//!   each is within one micro-dollar of its exact value.
//! - Users override or add models with `[prices."provider/model"]` in the config
//!   ([`ModelPriceOverride`]); an override in the wrong unit (per token instead of per
//!   million) is refused with an error naming the field and the fix.

mod catalog;
mod model;
mod price;

pub use catalog::{
    Catalog, CostEstimate, CostOptions, DEFAULT_EXPECTED_COMPLETION_TOKENS, EstimateOptions, cost,
    estimate_cost, validate_overrides,
};
pub use gaterouter_types::money::{Cost, Currency};
pub use model::{Capabilities, ModelPrice, ModelPriceOverride, PriceOverrides, PriceTier};
pub use price::Price;
