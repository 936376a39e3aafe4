//! Images: references, configs, the image store, import, load and save.

mod archive;
pub mod changes;
pub mod config;
mod error;
mod import;
pub mod reference;
mod store;

pub use archive::Loaded;
pub use config::ImageConfig;
pub use error::{ImageError, Result};
pub use import::{go_arch, ImportOptions};
pub use reference::{Reference, ReferenceError};
pub use store::{Image, ImageStore, Layer, LayerBlob, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_ZSTD};
