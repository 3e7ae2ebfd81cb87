//! The dense linear kernel against float64 sums: the forward `x·Wᵀ`, both
//! gradients through autodiff, over tiny, odd and multi-threaded shapes;
//! results equal bit for bit on one thread and two; empty axes; and the
//! error for mismatched shapes.

mod linear_checks;

use idx_flow_kernels::dense::linear;

/// (M, K, O): one value; odd sizes below gemm's blocks; rows, a reduction
/// and columns past its blocks, split over the threads.
const SHAPES: [(usize, usize, usize); 5] = [
    (1, 1, 1),
    (5, 7, 3),
    (37, 300, 129),
    (300, 64, 257),
    (1030, 33, 70),
];

#[test]
fn forward_and_gradients_match_float64() {
    linear_checks::forward_and_gradients_match_float64(linear, &SHAPES);
}

#[test]
fn results_do_not_depend_on_threads() {
    linear_checks::results_do_not_depend_on_threads(linear, &SHAPES);
}

#[test]
fn mismatched_shapes_are_refused() {
    linear_checks::mismatched_shapes_are_refused(linear);
}

#[test]
fn empty_dimensions_give_empty_or_zero_results() {
    linear_checks::empty_dimensions_give_empty_or_zero_results(linear);
}
