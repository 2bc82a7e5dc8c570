//! Generated gRPC code (see build.rs); never edited by hand.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/orgtrail.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/orgtrail.v1.serde.rs"));
}

/// The encoded descriptor set of every orgtrail proto file, comments included (reflection, docs).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/orgtrail_descriptor.bin"));
