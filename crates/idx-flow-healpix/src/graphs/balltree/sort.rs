//! scikit-learn's `simultaneous_sort`, the sort that orders a query's k
//! best at the end, repeated step for step: with it, exactly tied
//! neighbours come out in the order scikit-learn leaves them.

/// scikit-learn's `simultaneous_sort` (1.9: introsort with a two-way
/// partition around a median-of-three pivot, insertion sort from 15 values
/// down, heapsort past the depth limit).
pub(super) fn simultaneous_sort(dist: &mut [f64], idx: &mut [usize]) {
    let n = dist.len();
    if n == 0 {
        return;
    }
    let maxd = 2 * (n as f64).log2() as isize;
    introsort_2way(dist, idx, maxd);
}

fn swap_both(d: &mut [f64], x: &mut [usize], i: usize, j: usize) {
    d.swap(i, j);
    x.swap(i, j);
}

fn introsort_2way(mut d: &mut [f64], mut x: &mut [usize], mut maxd: isize) {
    while d.len() > 15 {
        let n = d.len();
        if maxd <= 0 {
            heapsort(d, x);
            return;
        }
        maxd -= 1;
        // Median of three: the smallest first, the pivot last.
        let mid = n / 2;
        if d[0] > d[n - 1] {
            swap_both(d, x, 0, n - 1);
        }
        if d[n - 1] > d[mid] {
            swap_both(d, x, n - 1, mid);
            if d[0] > d[n - 1] {
                swap_both(d, x, 0, n - 1);
            }
        }
        let pivot = d[n - 1];
        let (mut i, mut j) = (1usize, n as isize - 2);
        loop {
            while (i as isize) <= j && d[i] < pivot {
                i += 1;
            }
            while (i as isize) <= j && d[j as usize] > pivot {
                j -= 1;
            }
            if i as isize >= j {
                break;
            }
            swap_both(d, x, i, j as usize);
            i += 1;
            j -= 1;
        }
        swap_both(d, x, i, n - 1);
        let (left_d, right_d) = std::mem::take(&mut d).split_at_mut(i);
        let (left_x, right_x) = std::mem::take(&mut x).split_at_mut(i);
        introsort_2way(left_d, left_x, maxd);
        d = &mut right_d[1..];
        x = &mut right_x[1..];
    }
    // Insertion sort of what is left.
    for i in 1..d.len() {
        let (tv, ti) = (d[i], x[i]);
        let mut j = i;
        while j > 0 && d[j - 1] > tv {
            d[j] = d[j - 1];
            x[j] = x[j - 1];
            j -= 1;
        }
        d[j] = tv;
        x[j] = ti;
    }
}

fn heapsort(d: &mut [f64], x: &mut [usize]) {
    let n = d.len();
    let mut start = (n - 2) / 2;
    loop {
        sift_down(d, x, start, n);
        if start == 0 {
            break;
        }
        start -= 1;
    }
    let mut end = n - 1;
    while end > 0 {
        swap_both(d, x, 0, end);
        sift_down(d, x, 0, end);
        end -= 1;
    }
}

fn sift_down(d: &mut [f64], x: &mut [usize], start: usize, end: usize) {
    let mut root = start;
    loop {
        let child = 2 * root + 1;
        let mut max = root;
        if child < end && d[max] < d[child] {
            max = child;
        }
        if child + 1 < end && d[max] < d[child + 1] {
            max = child + 1;
        }
        if max == root {
            return;
        }
        swap_both(d, x, root, max);
        root = max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_sort_sorts_every_size() {
        for n in [0usize, 1, 2, 3, 15, 16, 40, 200] {
            let mut d: Vec<f64> = (0..n).map(|i| ((i * 37 + 11) % 50) as f64).collect();
            let mut x: Vec<usize> = (0..n).collect();
            let before: Vec<(f64, usize)> = d.iter().copied().zip(x.iter().copied()).collect();
            simultaneous_sort(&mut d, &mut x);
            assert!(d.windows(2).all(|w| w[0] <= w[1]), "n {n}");
            // The same pairs, permuted.
            let mut after: Vec<(f64, usize)> = d.iter().copied().zip(x.iter().copied()).collect();
            let mut sorted_before = before.clone();
            sorted_before.sort_by_key(|p| p.1);
            after.sort_by_key(|p| p.1);
            assert_eq!(after, sorted_before);
        }
    }
}
