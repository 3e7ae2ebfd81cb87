//! The skinny linear kernel against float64 sums: the forward `x·Wᵀ`, both
//! gradients through autodiff, over shapes that exercise every block and
//! tail of the kernels; results equal bit for bit on one thread and two;
//! and the error for mismatched shapes.

mod linear_checks;

use idx_flow_kernels::skinny::{linear, worthwhile};

/// (M, K, O): one row and a prime K; K past one cache block with a tail;
/// K spanning 16+ blocks (no row groups in the input gradient); few
/// columns with many rows of W (row groups, partial sums); O not a multiple
/// of the task rows; several tasks of W's rows in every kernel; one packed
/// group of eight rows of x plus four and one, over blocks with a tail.
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 7, 3),
    (5, 2051, 19),
    (3, 16 * 2048 + 13, 2),
    (8, 40, 1001),
    (2, 515, 37),
    (32, 9, 17),
    (4, 70_001, 40),
    (13, 1029, 23),
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

#[test]
fn worthwhile_only_for_few_rows_and_large_weights() {
    assert!(worthwhile(8, 512 * 132_354));
    assert!(!worthwhile(8, 256 * 1024));
    assert!(!worthwhile(4096, 512 * 132_354));
}
