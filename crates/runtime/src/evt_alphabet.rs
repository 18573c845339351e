//! The alphabet the `.evt` parser proptests build lines from (test builds only): the
//! punctuation, words, numbers and odd characters that make the fast paths and the general
//! parser disagree when one of them is wrong. Shared by `evt_scan` and `evt_fast`.

use proptest::prelude::*;

/// One piece of a generated `.evt` line.
pub(crate) fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(" ".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(";".to_string()),
        Just("@".to_string()),
        "[a-z_][a-z0-9_]{0,6}",
        "-?[0-9]{1,20}",
        "-?[0-9]{1,4}\\.[0-9]{0,4}",
        "[0-9]e[0-9]",
        Just("true".to_string()),
        Just("nil".to_string()),
        Just("ms".to_string()),
        Just("BATCH".to_string()),
        Just("é".to_string()),
        Just("\t".to_string()),
        Just("\r".to_string()),
        Just("\u{b}".to_string()),
        Just("\u{a0}".to_string()),
    ]
}
