//! Timing helpers shared by the benchmarks (which print figures; they assert nothing).

use std::time::Instant;

/// Median wall time in seconds of `runs` calls of `f`, after `warmup` unmeasured calls.
pub fn median_seconds(mut f: impl FnMut(), runs: usize, warmup: usize) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}
