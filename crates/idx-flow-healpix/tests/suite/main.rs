//! Integration tests of the HEALPix layer: geometry against healpy, graphs
//! against idx_flow, graph files. Fixture-driven tests read the folder from
//! `IDX_FLOW_FIXTURES` (the workspace's `fixtures/` otherwise).

mod graph_files;
mod graphs;
mod sht;
