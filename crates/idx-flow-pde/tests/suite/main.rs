//! Integration tests of the pdequinox family.

mod archs;
mod pde;
