//! The client (being written).

use std::path::Path;

use crate::config::Config;
use crate::error::Result;

/// Entry point.
#[derive(Debug, Clone)]
pub struct Client {
    config: Config,
}

impl Client {
    /// Build from config.
    pub fn new(config: Config) -> Result<Self> {
        Ok(Client { config })
    }
    /// Build from a TOML file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(Config::from_toml_file(path)?)
    }
    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
