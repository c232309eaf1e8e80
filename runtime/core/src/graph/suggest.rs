//! "Did you mean" by edit distance.

/// Edit distance in characters: insertions, deletions, substitutions and
/// swaps of two neighbours each count one (optimal string alignment).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        d[at(i, 0)] = i;
    }
    for j in 0..=b.len() {
        d[at(0, j)] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[at(i - 1, j)] + 1)
                .min(d[at(i, j - 1)] + 1)
                .min(d[at(i - 1, j - 1)] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[at(i - 2, j - 2)] + 1);
            }
            d[at(i, j)] = best;
        }
    }
    d[at(a.len(), b.len())]
}

/// Longest name that gets a "did you mean".
const SUGGEST_MAX_CHARS: usize = 64;

/// The candidates nearest to `word` (at most three, all at the smallest
/// distance), if any is close enough to be a likely typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<&'a str> {
    let length = word.chars().count();
    // A typo is in a name a person types: a longer one (a generated file's)
    // gets no suggestion, and the distance table stays small whatever the
    // file holds.
    if length > SUGGEST_MAX_CHARS {
        return Vec::new();
    }
    let limit = (length / 3).max(1);
    let mut best: Vec<&'a str> = Vec::new();
    let mut best_distance = usize::MAX;
    for candidate in candidates {
        // Lengths that differ by more than the limit are farther than it.
        if candidate.chars().count().abs_diff(length) > limit {
            continue;
        }
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

/// `"; did you mean `a`? {tail}"`, or `"; {tail}"` when nothing is near.
pub(crate) fn hint<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    tail: &str,
) -> String {
    let near = did_you_mean(word, candidates);
    if near.is_empty() {
        format!("; {tail}")
    } else {
        format!("{near} {tail}")
    }
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
        assert_eq!(distance("alpah", "alpha"), 1);
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

    #[test]
    fn a_name_too_long_to_be_typed_gets_no_suggestion_and_no_huge_table() {
        // Two 400k-character names: their distance table alone would be
        // 160 G entries, more than any machine allocates.
        let word = "a".repeat(400_000);
        let near = format!("b{}", "a".repeat(399_999));
        assert_eq!(nearest(&word, [near.as_str()]), Vec::<&str>::new());
        // A short word is never compared with a far longer candidate.
        assert_eq!(nearest("ewm", [near.as_str(), "ewma"]), vec!["ewma"]);
    }
}
