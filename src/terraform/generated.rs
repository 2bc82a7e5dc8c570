//! The schemas and conversions `build.rs` generates from the proto descriptors with `codegen`.

#![allow(clippy::all, clippy::pedantic)]

use super::codegen::{Attr, Kind, Mode, Nesting, Schema, SpecKind};
use super::convert::*;
use super::value::Value;
use crate::proto::v1 as pb;

include!(concat!(env!("OUT_DIR"), "/terraform_generated.rs"));
