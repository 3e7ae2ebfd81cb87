//! Integration tests of the ginjax family.

mod equivariant;
