/// Shannon entropy of `data` in bits per byte (0.0 for empty input).
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let len = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::shannon_entropy;

    #[test]
    fn entropy_bounds() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaaaaaa"), 0.0);
        assert!((shannon_entropy(b"abababab") - 1.0).abs() < 1e-9);
        assert!((shannon_entropy(b"abcdefgh") - 3.0).abs() < 1e-9);
        assert!(shannon_entropy(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") < 1.0);
    }
}
