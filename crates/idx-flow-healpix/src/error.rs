//! The library's error type: every mistake a user can make (sizes, files,
//! configurations) comes back as an [`Error`] naming what was wrong and what
//! was expected.

use std::path::PathBuf;

/// Everything that can go wrong in `idx-flow`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An nside that no HEALPix grid of the requested ordering has.
    #[error("invalid nside {nside}: {expected}")]
    InvalidNside {
        /// The nside that was given.
        nside: u64,
        /// What a valid nside looks like.
        expected: String,
    },

    /// A pixel index outside `0..12·nside²`.
    #[error("pixel {pixel} is out of range for nside {nside} (expected 0..{npix})")]
    PixelOutOfRange {
        /// The offending pixel index.
        pixel: u64,
        /// The grid's nside.
        nside: u32,
        /// The number of pixels of the grid.
        npix: u64,
    },

    /// A direction on the sphere that is not one (NaN, colatitude outside `[0, π]`, zero vector).
    #[error("invalid direction: {0}")]
    InvalidDirection(String),

    /// A number of neighbours the grids cannot provide.
    #[error("invalid k = {k}: {expected}")]
    InvalidK {
        /// The k that was given.
        k: usize,
        /// What a valid k looks like.
        expected: String,
    },

    /// Any other argument out of its domain (an unknown method name, a negative radius, ...).
    #[error("invalid argument {name}: {message}")]
    InvalidArgument {
        /// Which argument.
        name: &'static str,
        /// What was wrong and what was expected.
        message: String,
    },

    /// A thread that another waits on (a prefetch thread, an MPI rank)
    /// produced nothing within its time limit.
    #[error("timed out after {seconds} s: {what}")]
    Timeout {
        /// What was awaited and what to check.
        what: String,
        /// The limit.
        seconds: f64,
    },

    /// The processes of a distributed run cannot work together: they were
    /// started with different options, or one of them failed.
    #[error("distributed run: {0}")]
    Distributed(String),

    /// Arrays whose shapes do not fit together.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    Shape {
        /// Where the shapes met.
        context: String,
        /// The shape that was expected.
        expected: String,
        /// The shape that was received.
        got: String,
    },

    /// A file whose content is not what it should be (dtype, shape, truncated body, missing entry).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong and what was expected.
        message: String,
    },

    /// An operating-system error while reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidArgument`]: argument `name` was wrong, as `message` says.
    pub fn arg(name: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            message: message.into(),
        }
    }

    /// An [`Error::Format`]: the content of file `path` is not what it should be.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Io`]: the operating system failed on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
