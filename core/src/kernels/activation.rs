//! Element-wise activation and output helpers.

/// In-place ReLU on int8 values with zero point `zero_point`: `x = max(x, zero_point)`.
/// Any shape (element-wise).
pub fn relu(x: &mut [i8], zero_point: i8) {
    for v in x {
        *v = (*v).max(zero_point);
    }
}

/// Index of the largest score; the **first** one wins ties. `None` for an empty slice.
pub fn argmax(scores: &[i8]) -> Option<usize> {
    let mut best: Option<(usize, i8)> = None;
    for (i, &s) in scores.iter().enumerate() {
        match best {
            Some((_, b)) if s <= b => {}
            _ => best = Some((i, s)),
        }
    }
    best.map(|(i, _)| i)
}
