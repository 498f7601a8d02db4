//! Pure domain types: no database, network or HTTP crate is imported below this module.
//!
//! Values are parsed once, at the door (`EmailAddress::parse`, `Port::parse`…); code past the
//! door receives types that cannot hold an invalid value.

pub mod account;
pub mod diagnosis;
pub mod i18n;
pub mod json_text;
pub mod message;
pub mod permission;
pub mod presets;
pub mod validation;
