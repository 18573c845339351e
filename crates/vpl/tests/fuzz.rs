//! Robustness: the front-end never panics, and every diagnostic points inside the source.
//!
//! Inputs: random byte strings, random soups of VPL tokens (with newlines and indentation), and
//! random mutations (delete / insert / swap characters) of the valid example programs.

use proptest::prelude::*;
use varpulis_vpl::{check, parse, render_all, CheckOptions, Diagnostic};

/// Asserts that `d` lies inside `src` and renders without panicking.
fn assert_inside(src: &str, diags: &[Diagnostic]) {
    let lines: Vec<&str> = src.split('\n').collect();
    for d in diags {
        let s = d.span;
        assert!(
            s.start <= s.end && s.end <= src.len(),
            "{d:?} outside {} bytes",
            src.len()
        );
        assert!(
            src.is_char_boundary(s.start) && src.is_char_boundary(s.end),
            "{d:?}"
        );
        assert!(
            s.line >= 1 && (s.line as usize) <= lines.len(),
            "{d:?}: {} lines",
            lines.len()
        );
        let line_chars = lines[s.line as usize - 1].chars().count();
        assert!(
            s.column >= 1 && (s.column as usize) <= line_chars + 1,
            "{d:?}: line {} has {line_chars} chars in {src:?}",
            s.line
        );
        // The byte offset and the line/column agree.
        let before = &src[..s.start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        assert_eq!((s.line as usize, s.column as usize), (line, col), "{d:?}");
    }
    let _ = render_all(src, "fuzz.vpl", diags);
}

fn run(src: &str) {
    let (_, diags) = parse(src);
    assert_inside(src, &diags);
    match check(src, &CheckOptions::default()) {
        Ok(c) => assert_inside(src, &c.warnings),
        Err(d) => {
            assert!(!d.is_empty());
            assert_inside(src, &d);
        }
    }
}

const TOKENS: &[&str] = &[
    "stream",
    "event",
    "fn",
    "let",
    "var",
    "const",
    "connector",
    "context",
    "emit",
    "return",
    "if",
    "elif",
    "else",
    "then",
    "for",
    "while",
    "in",
    "not",
    "and",
    "or",
    "break",
    "continue",
    "as",
    "where",
    "all",
    "true",
    "false",
    "null",
    "x",
    "A",
    "S",
    "mqtt",
    "from",
    "to",
    "type",
    "1",
    "2.5",
    "1e6",
    "10ms",
    "5min",
    "\"s\"",
    "\"\\u{e9}\"",
    "\"\\q\"",
    "\"open",
    "@2024-03-01",
    "@2024-13-01",
    "+",
    "-",
    "*",
    "/",
    "%",
    "**",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&",
    "|",
    "^",
    "~",
    "<<",
    ">>",
    "=",
    ":=",
    "->",
    "=>",
    ".",
    "?.",
    "??",
    "..",
    "..=",
    ":",
    ",",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "?",
    ".where(",
    ".emit(",
    ".process(",
    "#c",
    "/*",
    "*/",
    "é",
    "\t",
    "\n",
    "\n    ",
    "\n        ",
    "\r\n",
    "!",
    ";",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..80).prop_map(|toks| {
        let mut s = String::new();
        for t in toks {
            s.push_str(t);
            if !t.starts_with('\n') && !t.starts_with('\r') {
                s.push(' ');
            }
        }
        s
    })
}

const PROGRAMS: &[&str] = &[
    include_str!("programs/mandelbrot_worker_0.vpl"),
    include_str!("programs/pumps.vpl"),
    include_str!("programs/escape_time.vpl"),
    include_str!("programs/everything.vpl"),
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, char),
    Swap(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let chars = prop::sample::select(vec![
        '(', ')', ':', '\n', ' ', '"', '.', ',', '=', '-', '>', 'x', '#', '\\', '[', '{', '@',
        '\t', 'ü',
    ]);
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), chars).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Swap(i, j)),
    ]
}

fn mutate(src: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    for e in edits {
        let n = chars.len();
        match *e {
            Edit::Delete(i) if n > 0 => {
                chars.remove(i % n);
            }
            Edit::Insert(i, c) => chars.insert(i % (n + 1), c),
            Edit::Swap(i, j) if n > 0 => chars.swap(i % n, j % n),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    // 300 cases per property by default; `PROPTEST_CASES=20000` for a longer soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_ascii_never_panics(s in "[ -~\n\t]{0,300}") {
        run(&s);
    }

    #[test]
    fn token_soups_never_panic(s in token_soup()) {
        run(&s);
    }

    #[test]
    fn mutated_programs_never_panic(
        which in 0..PROGRAMS.len(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        run(&mutate(PROGRAMS[which], &edits));
    }
}

#[test]
fn pathological_inputs() {
    let cases = [
        String::new(),
        "\n\n\n".to_string(),
        "(".repeat(100_000),
        "[".repeat(100_000),
        "{".repeat(100_000),
        format!("let x = {}", "-".repeat(100_000)),
        format!("let x = {}1", "not ".repeat(50_000)),
        format!("let x = a{}", ".b".repeat(50_000)),
        format!("let x = a{}", "[0]".repeat(50_000)),
        format!("let x = 1{}", " + 1".repeat(50_000)),
        format!("let x = 1{}", " ** 1".repeat(50_000)),
        format!("let x = {}", "if a then ".repeat(20_000)),
        format!(
            "fn f():\n{}",
            (1..2000)
                .map(|i| format!("{}while x:\n", " ".repeat(i)))
                .collect::<String>()
        ),
        "stream S = A".to_string() + &" .where(x)".repeat(20_000),
        "\"".repeat(1001),
        "/*".to_string(),
        "@".repeat(100),
        "9".repeat(400),
        "é".repeat(100),
        "\u{0}\u{1}\u{7f}".to_string(),
    ];
    for src in &cases {
        run(src);
    }
}

#[test]
fn deep_but_legal_nesting_does_not_overflow() {
    let depth = varpulis_vpl::parser::MAX_DEPTH - 4;
    let src = format!("let x = {}1{}", "(".repeat(depth), ")".repeat(depth));
    let (_, d) = parse(&src);
    assert!(d.is_empty(), "{d:?}");
    assert!(check(&src, &CheckOptions::default()).is_ok());
}
