//! Integration tests of the training crate: data, the autoencoder, training
//! and resume, pictures.

mod apply;
mod baselines;
mod corruption;
mod data;
mod datasets;
mod distributed;
mod models;
mod optimizer_state;
mod plot;
mod training;
