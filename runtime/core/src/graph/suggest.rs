//! "Did you mean" by edit distance.

/// Levenshtein distance in characters.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(0);
            let left = row.get(j).copied().unwrap_or(0);
            let cost = usize::from(ca != *cb);
            let value = (diagonal + cost).min(above + 1).min(left + 1);
            diagonal = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = value;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

/// The candidates nearest to `word` (at most three, all at the smallest
/// distance), if any is close enough to be a likely typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Vec<&'a str> = Vec::new();
    let mut best_distance = usize::MAX;
    for candidate in candidates {
        let d = distance(word, candidate);
        if d > limit || d > best_distance || candidate == word {
            continue;
        }
        if d < best_distance {
            best.clear();
            best_distance = d;
        }
        if !best.contains(&candidate) && best.len() < 3 {
            best.push(candidate);
        }
    }
    best
}

/// `"; did you mean `a`?"`, `"; did you mean `a` or `b`?"`, or `""`.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    let near = nearest(word, candidates);
    if near.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = near.iter().map(|n| format!("`{n}`")).collect();
    format!("; did you mean {}?", quoted.join(" or "))
}

/// `a, b, c`, or `none`.
pub(crate) fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.into_iter().collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("ewm", "ewma"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }

    #[test]
    fn nearest_keeps_only_close_candidates() {
        assert_eq!(nearest("ewm", ["ewma", "scale", "soc"]), vec!["ewma"]);
        assert_eq!(nearest("zzzzzz", ["ewma", "scale"]), Vec::<&str>::new());
        assert_eq!(
            did_you_mean("layot", ["name", "layout"]),
            "; did you mean `layout`?"
        );
    }
}
