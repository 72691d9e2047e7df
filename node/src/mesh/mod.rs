//! The mesh (being written).

pub mod wire;
