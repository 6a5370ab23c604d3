//! `torch.topk` and `torch.argmax` on the CPU, ties included.
//!
//! torch.topk compares values only, so which of several equal values comes
//! first is whatever libstdc++'s selection algorithms leave: `std::partial_sort`
//! (a heap) when `k * 64 <= n`, else `std::nth_element` (introselect) followed
//! by `std::sort` (introsort) of the first `k - 1` elements (ATen's
//! `topk_impl_loop`). Beam search feeds topk rows full of equal values (the
//! `-1e9` masks, `-inf` bans), and the order decides which hypothesis fills
//! which slot, so this file ports those algorithms step for step (GCC's
//! `bits/stl_algo.h` and `bits/stl_heap.h`). `fixtures/generation` checks the
//! port against torch on tie-heavy rows.
//!
//! The comparator is torch's for `largest=True`: NaN ranks above everything.

type Elem = (f32, usize);

/// `x` goes before `y` in topk's output order.
#[inline]
fn before(x: &Elem, y: &Elem) -> bool {
    (x.0.is_nan() && !y.0.is_nan()) || x.0 > y.0
}

/// The `k` largest of `values` with their indices, in torch.topk's order
/// (`largest=True, sorted=True`). `k` is clamped to `values.len()`.
pub fn topk(values: &[f32], k: usize) -> Vec<(f32, usize)> {
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    topk_by(values.len(), k, |i| values[i], &mut scratch, &mut out);
    out
}

/// [`topk`] over `n` values read through `value`, writing into `out`; `scratch`
/// is reused between calls (the selection path needs the whole row).
pub(crate) fn topk_by(
    n: usize,
    k: usize,
    value: impl Fn(usize) -> f32,
    scratch: &mut Vec<Elem>,
    out: &mut Vec<Elem>,
) {
    let k = k.min(n);
    out.clear();
    if k == 0 {
        return;
    }
    if k * 64 <= n {
        // std::partial_sort = __heap_select + __sort_heap. __heap_select's pop
        // writes the old root to position i, which is never read again, so the
        // row need not be copied: only the k-element heap is kept.
        out.extend((0..k).map(|i| (value(i), i)));
        make_heap(out);
        for i in k..n {
            let candidate = (value(i), i);
            if before(&candidate, &out[0]) {
                adjust_heap(out, 0, k, candidate);
            }
        }
        sort_heap(out);
    } else {
        scratch.clear();
        scratch.extend((0..n).map(|i| (value(i), i)));
        nth_element(scratch, k - 1);
        sort(&mut scratch[..k - 1]);
        out.extend_from_slice(&scratch[..k]);
    }
}

/// `torch.argmax` of a row: the first maximum, or the first NaN.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        if values[best].is_nan() {
            break;
        }
        if v.is_nan() || v > values[best] {
            best = i;
        }
    }
    best
}

fn lg(n: usize) -> usize {
    (usize::BITS - 1 - n.leading_zeros()) as usize
}

// ---- bits/stl_heap.h ----

fn push_heap(a: &mut [Elem], mut hole: usize, top: usize, value: Elem) {
    while hole > top {
        let parent = (hole - 1) / 2;
        if !before(&a[parent], &value) {
            break;
        }
        a[hole] = a[parent];
        hole = parent;
    }
    a[hole] = value;
}

fn adjust_heap(a: &mut [Elem], mut hole: usize, len: usize, value: Elem) {
    let top = hole;
    let mut child = hole;
    while child < len.saturating_sub(1) / 2 {
        child = 2 * (child + 1);
        if before(&a[child], &a[child - 1]) {
            child -= 1;
        }
        a[hole] = a[child];
        hole = child;
    }
    if len & 1 == 0 && len >= 2 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        a[hole] = a[child - 1];
        hole = child - 1;
    }
    push_heap(a, hole, top, value);
}

fn make_heap(a: &mut [Elem]) {
    let len = a.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = a[parent];
        adjust_heap(a, parent, len, value);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

/// __pop_heap(first, last, result) with `result` = `last`: the root moves to
/// `last` and `last`'s element sifts in from the root.
fn pop_heap_to(a: &mut [Elem], last: usize) {
    let value = a[last];
    a[last] = a[0];
    adjust_heap(a, 0, last, value);
}

fn sort_heap(a: &mut [Elem]) {
    let mut last = a.len();
    while last > 1 {
        last -= 1;
        pop_heap_to(a, last);
    }
}

/// __heap_select(first, middle, last) on the slice, `middle` = `m`.
fn heap_select(a: &mut [Elem], m: usize) {
    make_heap(&mut a[..m]);
    for i in m..a.len() {
        if before(&a[i], &a[0]) {
            let value = a[i];
            a[i] = a[0];
            adjust_heap(&mut a[..m], 0, m, value);
        }
    }
}

// ---- bits/stl_algo.h ----

fn move_median_to_first(a: &mut [Elem], result: usize, x: usize, y: usize, z: usize) {
    let pick = if before(&a[x], &a[y]) {
        if before(&a[y], &a[z]) {
            y
        } else if before(&a[x], &a[z]) {
            z
        } else {
            x
        }
    } else if before(&a[x], &a[z]) {
        x
    } else if before(&a[y], &a[z]) {
        z
    } else {
        y
    };
    a.swap(result, pick);
}

/// __unguarded_partition(first, last, pivot) with the pivot at `pivot`. The
/// bounds checks never fire for a strict weak order (the pivot stops both
/// scans); they only keep a broken invariant from running off the slice.
fn unguarded_partition(a: &mut [Elem], mut first: usize, mut last: usize, pivot: usize) -> usize {
    loop {
        while first < a.len() && before(&a[first], &a[pivot]) {
            first += 1;
        }
        last -= 1;
        while last > 0 && before(&a[pivot], &a[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        a.swap(first, last);
        first += 1;
    }
}

fn partition_pivot(a: &mut [Elem], first: usize, last: usize) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(a, first, first + 1, mid, last - 1);
    unguarded_partition(a, first + 1, last, first)
}

fn unguarded_linear_insert(a: &mut [Elem], mut last: usize) {
    let value = a[last];
    while last > 0 && before(&value, &a[last - 1]) {
        a[last] = a[last - 1];
        last -= 1;
    }
    a[last] = value;
}

fn insertion_sort(a: &mut [Elem], first: usize, last: usize) {
    if first == last {
        return;
    }
    for i in first + 1..last {
        if before(&a[i], &a[first]) {
            let value = a[i];
            a.copy_within(first..i, first + 1);
            a[first] = value;
        } else {
            unguarded_linear_insert(a, i);
        }
    }
}

/// std::nth_element(begin, begin + nth, end).
fn nth_element(a: &mut [Elem], nth: usize) {
    let (mut first, mut last) = (0, a.len());
    if first == last || nth >= last {
        return;
    }
    let mut depth = 2 * lg(last - first);
    while last - first > 3 {
        if depth == 0 {
            heap_select(&mut a[first..last], nth + 1 - first);
            a.swap(first, nth);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(a, first, last);
        if cut <= nth {
            first = cut;
        } else {
            last = cut;
        }
    }
    insertion_sort(a, first, last);
}

/// std::sort: introsort, then the final insertion sort.
fn sort(a: &mut [Elem]) {
    let n = a.len();
    if n == 0 {
        return;
    }
    introsort_loop(a, 0, n, 2 * lg(n));
    if n > 16 {
        insertion_sort(a, 0, 16);
        for i in 16..n {
            unguarded_linear_insert(a, i);
        }
    } else {
        insertion_sort(a, 0, n);
    }
}

fn introsort_loop(a: &mut [Elem], first: usize, mut last: usize, mut depth: usize) {
    while last - first > 16 {
        if depth == 0 {
            // std::__partial_sort(first, last, last): heap sort.
            let part = &mut a[first..last];
            let m = part.len();
            heap_select(part, m);
            sort_heap(part);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(a, first, last);
        introsort_loop(a, cut, last, depth);
        last = cut;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without ties every path must give the plain descending order.
    #[test]
    fn distinct_values_come_out_sorted() {
        let mut state = 12345u64;
        for n in [1usize, 2, 5, 17, 40, 100, 700, 3000] {
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 11) as f32
                })
                .collect();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
            for k in [1, 2, 3, 10, 47, n] {
                let k = k.min(n);
                let got: Vec<usize> = topk(&values, k).iter().map(|e| e.1).collect();
                assert_eq!(got, order[..k], "n={n} k={k}");
            }
        }
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
        assert_eq!(argmax(&[1.0, f32::NAN, 5.0, f32::NAN]), 1);
    }
}
