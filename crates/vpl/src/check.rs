//! Semantic analysis (stub, being written).
use crate::ast::Program;
use crate::Diagnostic;

/// Options for [`crate::check`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Connector names provided from outside the program (e.g. registered with the coordinator);
    /// `.from`/`.to` may use them without a `connector` declaration.
    pub external_connectors: Vec<String>,
}

/// A program that passed the checks.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The parsed program.
    pub program: Program,
    /// Non-fatal findings.
    pub warnings: Vec<Diagnostic>,
}

/// Runs all semantic checks.
pub fn check_program(_program: &Program, _options: &CheckOptions) -> Vec<Diagnostic> {
    Vec::new()
}

/// The closest candidate to `word` by edit distance, if close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let max = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
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
