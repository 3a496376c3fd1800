//! Provider emulator (being written).
