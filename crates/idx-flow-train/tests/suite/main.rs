//! Integration tests of the training crate: data, the autoencoder, training
//! and resume, pictures.

mod apply;
mod baselines;
mod corruption;
mod data;
mod datasets;
mod models;
mod plot;
mod training;
