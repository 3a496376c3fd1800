//! What one level of the organization sets ([`PolicyRules`]), the rules that apply to
//! one API key resolved broad → narrow ([`EffectiveRules`], each remembering the level
//! that set it), and the one model-glob match both sides use ([`glob_match`]).

use serde::{Deserialize, Serialize};

use crate::{Denial, Level, Tier};

/// The rules one level sets. Every field is optional: an unset field inherits from the
/// broader level. Narrower levels override broader ones field by field, except
/// `deny_models`, which accumulates (a deny set by the org cannot be lifted below it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyRules {
    /// Models that may be used, as globs over `provider/model` (`openai/*`,
    /// `anthropic/claude-*-4*`). Unset: all models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_models: Option<Vec<String>>,
    /// Models that may never be used (globs); accumulates down the tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_models: Option<Vec<String>>,
    /// Routing tiers `model: "auto"` may pick (`light`, `standard`, `heavy`; anything else
    /// is refused when the policy is parsed). Unset: all tiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_tiers: Option<Vec<Tier>>,
    /// Ceiling on `max_tokens` (completion) per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_request: Option<u64>,
    /// Only providers/models flagged `zero_retention` in the price catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_retention_only: Option<bool>,
}

impl PolicyRules {
    /// Check values that serde cannot: globs are non-empty, tiers are known.
    pub fn validate(&self, field_prefix: &str) -> Result<(), String> {
        for (name, list) in [
            ("allow_models", &self.allow_models),
            ("deny_models", &self.deny_models),
        ] {
            for g in list.iter().flatten() {
                if g.trim().is_empty() {
                    return Err(format!(
                        "{field_prefix}{name}: empty pattern; use globs such as `openai/*`"
                    ));
                }
            }
        }
        if self.max_tokens_per_request == Some(0) {
            return Err(format!(
                "{field_prefix}max_tokens_per_request: must be at least 1 (remove it for no limit)"
            ));
        }
        Ok(())
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == PolicyRules::default()
    }
}

/// A value together with the level that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it was set.
    pub level: Level,
}

/// The rules in force for one key, after inheritance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct EffectiveRules {
    /// Allow-list from the narrowest level that sets one.
    pub allow_models: Option<Sourced<Vec<String>>>,
    /// Every deny pattern from every level.
    pub deny_models: Vec<Sourced<String>>,
    /// Allowed tiers from the narrowest level that sets them.
    pub allowed_tiers: Option<Sourced<Vec<Tier>>>,
    /// Max tokens per request from the narrowest level that sets it.
    pub max_tokens_per_request: Option<Sourced<u64>>,
    /// Zero-retention requirement from the narrowest level that sets it.
    pub zero_retention_only: Option<Sourced<bool>>,
}

impl EffectiveRules {
    /// Resolve the rules of `levels`, given broadest first (org, department, project,
    /// group, user, key).
    pub fn resolve<'a>(
        levels: impl IntoIterator<Item = (&'a Level, &'a PolicyRules)>,
    ) -> EffectiveRules {
        let mut out = EffectiveRules::default();
        for (level, rules) in levels {
            if let Some(v) = &rules.allow_models {
                out.allow_models = Some(Sourced {
                    value: v.clone(),
                    level: level.clone(),
                });
            }
            for d in rules.deny_models.iter().flatten() {
                out.deny_models.push(Sourced {
                    value: d.clone(),
                    level: level.clone(),
                });
            }
            if let Some(v) = &rules.allowed_tiers {
                out.allowed_tiers = Some(Sourced {
                    value: v.clone(),
                    level: level.clone(),
                });
            }
            if let Some(v) = rules.max_tokens_per_request {
                out.max_tokens_per_request = Some(Sourced {
                    value: v,
                    level: level.clone(),
                });
            }
            if let Some(v) = rules.zero_retention_only {
                out.zero_retention_only = Some(Sourced {
                    value: v,
                    level: level.clone(),
                });
            }
        }
        out
    }

    /// May `model` (`provider/model`) be used? `zero_retention` is the catalog's flag for
    /// it (false when the catalog does not know the model).
    pub fn check_model(&self, model: &str, zero_retention: bool) -> Result<(), Denial> {
        if let Some(d) = self
            .deny_models
            .iter()
            .find(|d| glob_match(&d.value, model))
        {
            return Err(Denial {
                rule: "deny_models".into(),
                level: d.level.clone(),
                message: format!(
                    "model `{model}` is denied by pattern `{}` set at {}",
                    d.value, d.level
                ),
            });
        }
        if let Some(a) = &self.allow_models {
            if !a.value.iter().any(|g| glob_match(g, model)) {
                return Err(Denial {
                    rule: "allow_models".into(),
                    level: a.level.clone(),
                    message: format!(
                        "model `{model}` is not in the allowed models {:?} set at {}",
                        a.value, a.level
                    ),
                });
            }
        }
        if let Some(z) = &self.zero_retention_only {
            if z.value && !zero_retention {
                return Err(Denial {
                    rule: "zero_retention_only".into(),
                    level: z.level.clone(),
                    message: format!(
                        "model `{model}` is not flagged zero-retention in the price catalog, and {} allows only zero-retention models",
                        z.level
                    ),
                });
            }
        }
        Ok(())
    }

    /// May `model: "auto"` pick `tier`?
    pub fn check_tier(&self, tier: Tier) -> Result<(), Denial> {
        match &self.allowed_tiers {
            Some(t) if !t.value.contains(&tier) => Err(Denial {
                rule: "allowed_tiers".into(),
                level: t.level.clone(),
                message: format!(
                    "routing tier `{tier}` is not in the allowed tiers [{}] set at {}",
                    t.value
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    t.level
                ),
            }),
            _ => Ok(()),
        }
    }

    /// May a request ask for `max_tokens` completion tokens (None: not stated)?
    pub fn check_max_tokens(&self, max_tokens: Option<u64>) -> Result<(), Denial> {
        let Some(limit) = &self.max_tokens_per_request else {
            return Ok(());
        };
        match max_tokens {
            Some(n) if n <= limit.value => Ok(()),
            Some(n) => Err(Denial {
                rule: "max_tokens_per_request".into(),
                level: limit.level.clone(),
                message: format!(
                    "max_tokens {n} is above the limit of {} per request set at {}; lower max_tokens",
                    limit.value, limit.level
                ),
            }),
            None => Ok(()),
        }
    }
}

/// Glob match over `provider/model`: `*` matches any run of characters (including `/`),
/// `?` one character; everything else literally, case-sensitively. The matching is
/// `wildmatch`'s (the same two wildcards, no character classes or escapes).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::LevelKind;

    #[test]
    fn globs() {
        assert!(glob_match("openai/*", "openai/gpt-4o"));
        assert!(!glob_match("openai/*", "anthropic/claude-sonnet-4-5"));
        assert!(glob_match("*", "x/y"));
        assert!(glob_match(
            "anthropic/claude-*-4*",
            "anthropic/claude-sonnet-4-5"
        ));
        assert!(glob_match("openai/gpt-4?", "openai/gpt-4o"));
        assert!(!glob_match("openai/gpt-4?", "openai/gpt-4o-mini"));
        assert!(glob_match("*mini", "openai/gpt-4o-mini"));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        // Case-sensitive; `?` is one character, also a multi-byte one and `/`.
        assert!(!glob_match("OpenAI/*", "openai/gpt-4o"));
        assert!(glob_match("x/?", "x/é"));
        assert!(glob_match("openai?gpt-4o", "openai/gpt-4o"));
        assert!(!glob_match("a*b", "ab/c"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn inheritance_narrow_overrides_and_denies_accumulate() {
        let org = Level::new(LevelKind::Org, "acme");
        let dep = Level::new(LevelKind::Department, "eng");
        let key = Level::new(LevelKind::Key, "k1");
        let r_org = PolicyRules {
            allow_models: Some(vec!["openai/*".into(), "anthropic/*".into()]),
            deny_models: Some(vec!["openai/o1*".into()]),
            max_tokens_per_request: Some(8000),
            ..Default::default()
        };
        let r_dep = PolicyRules {
            allow_models: Some(vec!["openai/*".into()]),
            max_tokens_per_request: Some(2000),
            ..Default::default()
        };
        let r_key = PolicyRules {
            deny_models: Some(vec!["openai/gpt-4o".into()]),
            ..Default::default()
        };
        let eff = EffectiveRules::resolve([(&org, &r_org), (&dep, &r_dep), (&key, &r_key)]);
        assert!(eff.check_model("openai/gpt-4o-mini", false).is_ok());
        let d = eff
            .check_model("anthropic/claude-sonnet-4-5", false)
            .unwrap_err();
        assert_eq!(
            (d.rule.as_str(), d.level.clone()),
            ("allow_models", dep.clone())
        );
        let d = eff.check_model("openai/o1-mini", false).unwrap_err();
        assert_eq!((d.rule.as_str(), d.level.clone()), ("deny_models", org));
        let d = eff.check_model("openai/gpt-4o", false).unwrap_err();
        assert_eq!(d.level, key);
        assert!(eff.check_max_tokens(Some(2000)).is_ok());
        let d = eff.check_max_tokens(Some(2001)).unwrap_err();
        assert!(d.message.contains("department:eng"), "{}", d.message);
    }

    #[test]
    fn zero_retention_and_tiers() {
        let dep = Level::new(LevelKind::Department, "legal");
        let r = PolicyRules {
            zero_retention_only: Some(true),
            allowed_tiers: Some(vec![Tier::Light]),
            ..Default::default()
        };
        let eff = EffectiveRules::resolve([(&dep, &r)]);
        assert_eq!(
            eff.check_model("openai/gpt-4o", false).unwrap_err().rule,
            "zero_retention_only"
        );
        assert!(eff.check_model("openai/gpt-4o", true).is_ok());
        assert!(eff.check_tier(Tier::Light).is_ok());
        let d = eff.check_tier(Tier::Heavy).unwrap_err();
        assert_eq!(d.rule, "allowed_tiers");
        assert!(
            d.message.contains("[light] set at department:legal"),
            "{}",
            d.message
        );
        // An unknown tier is refused when the policy is read, naming the value and the choices.
        let e = serde_json::from_str::<PolicyRules>(r#"{"allowed_tiers": ["huge"]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("huge") && e.contains("heavy"), "{e}");
    }
}
