//! Integration tests of the spectrans family.

mod spectral;
