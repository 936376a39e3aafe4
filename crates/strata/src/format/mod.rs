//! Docker-compatible output: Go templates, tables, JSON, sizes and times,
//! byte for byte as the docker CLI prints them.
//!
//! - [`template`]: Go `text/template` with docker's functions
//!   ([`render`], [`Template`]). Parsing follows Go's grammar and error
//!   messages ([`parse`](mod@parse)); execution runs on `gotmpl`.
//! - [`table`]: list commands' `--format` handling ([`render_list`] with a
//!   [`ListFormat`]) and `inspect` output ([`render_inspect`],
//!   [`render_inspect_all`]).
//! - [`tabwriter`]: Go's `text/tabwriter` as docker configures it.
//! - [`units`]: go-units sizes and durations, Go's `time.Time.String()`.
//!
//! Data is `serde_json::Value` shaped like docker's JSON (the API objects for
//! inspect, one object per row for lists). Object key order matters: `json`
//! and inspect output print keys in the order the objects hold them, which
//! should be the Go struct field order of the docker API type. Go maps (labels,
//! options, ...) are printed by docker with sorted keys, so callers should
//! insert those sorted (build them from a `BTreeMap`).

#![allow(dead_code)]

pub mod gofmt;
pub mod parse;
pub mod ports;
pub mod table;
pub mod tabwriter;
pub mod template;
pub mod units;

#[allow(unused_imports)]
pub use table::{render_inspect, render_inspect_all, render_list, InspectOutput, ListFormat};
#[allow(unused_imports)]
pub use tabwriter::ellipsis;
#[allow(unused_imports)]
pub use template::{render, Template};
#[allow(unused_imports)]
pub use units::{ago, ago_now, bytes_size, go_time, human_duration, human_size};

/// Errors of template parsing and execution, displayed as docker prints them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The template does not parse; the message is Go's, e.g.
    /// `template: :1: function "foo" not defined`.
    #[error("template parsing error: {0}")]
    Parse(String),
    /// Executing the template failed (docker reports this with the same
    /// prefix); the message is the execution error.
    #[error("template parsing error: {0}")]
    Execute(String),
}
