//! Building images from Dockerfiles with docker's classic-builder semantics.

pub mod instructions;
pub mod parser;
pub mod shell;
