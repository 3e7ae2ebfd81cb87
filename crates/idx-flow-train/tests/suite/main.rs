//! Integration tests of the training crate: data, the autoencoder, training
//! and resume, pictures.

mod data;
mod models;
mod plot;
mod training;
