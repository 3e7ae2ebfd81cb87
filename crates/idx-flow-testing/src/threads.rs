//! Running a computation on a rayon pool of a given size, for the tests that
//! check a kernel's results do not depend on the number of threads.

/// `f` run inside a fresh rayon pool of `threads` threads.
pub fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(f)
}

/// Values as bit patterns, to compare results exactly.
pub fn bits(values: impl IntoIterator<Item = f32>) -> Vec<u32> {
    values.into_iter().map(f32::to_bits).collect()
}
