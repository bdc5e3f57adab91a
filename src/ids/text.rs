//! Free text from messages and from the world, made safe to log and to store.
//!
//! Ids have shapes ([`super`]); text does not (an incident's summary, a policy's name, the
//! reason cutover writes to `cutover.dev/reason`, which may quote an API's error message). Such
//! text is bounded in length and stripped of control characters, so it can neither forge a log
//! line (`\n` with `CUTOVER_LOG_FORMAT=text`), nor colour a terminal (ANSI escapes), nor grow a
//! response or an annotation without limit.

/// Characters that end a line or steer a terminal: every Unicode control character (C0, DEL,
/// C1, so `\n`, `\r`, ESC and NEL), plus the line and paragraph separators some log viewers
/// break lines on.
fn is_unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn replace_unprintable(c: char, with: char) -> char {
    if is_unprintable(c) { with } else { c }
}

/// Free text as cutover keeps it: control characters become spaces, surrounding whitespace is
/// trimmed, and the result has at most `max_chars` characters (cut text ends with `…`).
pub fn printable(s: &str, max_chars: usize) -> String {
    let s = s.trim_matches(|c: char| c.is_whitespace() || is_unprintable(c));
    let mut chars = s.chars().map(|c| replace_unprintable(c, ' '));
    let mut out: String = chars.by_ref().take(max_chars).collect();
    if chars.next().is_some() && out.pop().is_some() {
        out.push('…');
    }
    out
}

/// A short preview of untrusted text for error messages and logs: at most `max` characters plus
/// `…` when cut, control characters replaced by `�` (so a preview shows that they were there).
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    let mut chars = s.chars().map(|c| replace_unprintable(c, '\u{fffd}'));
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_strips_controls_and_bounds_length() {
        assert_eq!(printable("ok", 10), "ok");
        assert_eq!(printable("a\r\nb\u{1b}[31mc", 20), "a  b [31mc");
        assert_eq!(printable("  padded\n", 20), "padded");
        assert_eq!(printable("abcdef", 4), "abc…");
        assert_eq!(printable("abcd", 4), "abcd");
        assert_eq!(printable("line\u{2028}sep\u{85}nel", 20), "line sep nel");
        let long = "é".repeat(10_000);
        assert_eq!(printable(&long, 512).chars().count(), 512);
    }

    #[test]
    fn excerpt_truncates_and_marks_controls() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("abcde", 5), "abcde");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("a\nb", 5), "a\u{fffd}b");
    }
}
