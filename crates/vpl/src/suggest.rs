//! Did-you-mean suggestions by edit distance, shared by the parser and the checker.

/// The closest candidate to `word` by edit distance, if close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    // Allow one edit for very short names, then about one edit per three characters (min. two).
    let max = if len <= 2 { 1 } else { (len / 3).max(2) };
    candidates
        .into_iter()
        .filter(|c| *c != word && c.chars().count().abs_diff(len) <= max)
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= max)
        // Ties go to the candidate sharing the longest prefix (`foo` -> `floor`, not `cos`).
        .min_by_key(|(d, c)| (*d, std::cmp::Reverse(common_prefix(word, c)), *c))
        .map(|(_, c)| c)
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
