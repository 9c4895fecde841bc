//! How deep a JavaScript source nests, estimated before Boa parses it.
//!
//! Boa 0.22's parser is recursive descent with no check of its own stack: a source that nests
//! deeply enough overflows the thread's stack and aborts the process (`eval`, `new Function`, a
//! bundle's module). `stack-probe` (in `bench/`) measured the native stack one level of each
//! construct costs in a release build: a bracket (`(`, `[`, `{`, a template's `${`) 26–28 KiB,
//! because each goes down the whole precedence chain; a prefix or right-associative operator,
//! an `if`/`else`, an arrow or a `?` 1.1–3.0 KiB; a binary operator 0.4 KiB. This scan is
//! lexical and iterative: it skips strings, template text and comments, and charges every open
//! bracket [`BRACKET_BYTES`] and every operator or statement keyword since the innermost
//! expression boundary (`;`, `,`, or a newline between two complete tokens) [`OPERATOR_BYTES`],
//! so what it returns is at least what the parser will use. A source whose estimate is above
//! [`PARSE_STACK_BUDGET`] is refused with a catchable `RangeError` before it is parsed.

/// The stack a parse may take: a quarter of a script thread's 256 MiB. Room for 2,200
/// nested brackets, or 20,000 operators in one expression.
pub const PARSE_STACK_BUDGET: usize = 64 << 20;
/// One open bracket (measured up to 28,339 bytes).
pub const BRACKET_BYTES: usize = 29 * 1024;
/// One operator or statement keyword in the current expression (measured up to 2,978 bytes).
pub const OPERATOR_BYTES: usize = 3 * 1024;

/// Keywords that nest what follows them in the parser.
const NESTING_KEYWORDS: &[&str] = &[
    "typeof",
    "void",
    "delete",
    "await",
    "new",
    "yield",
    "if",
    "else",
    "for",
    "while",
    "do",
    "with",
    "in",
    "instanceof",
    "return",
    "throw",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Paren,
    Bracket,
    Brace,
    /// A template literal's text (between its backquotes, outside `${…}`).
    Template,
    /// A `${…}` inside a template literal.
    Substitution,
}

/// The last significant token, for deciding whether a newline ends an expression.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Nothing yet, an operator, an opening bracket or a nesting keyword: the expression goes on.
    Open,
    /// A name, a literal or a closing bracket: the expression may be complete.
    Complete,
}

/// The open frames and the operators charged, with running totals so that each character
/// costs O(1).
struct Scan {
    frames: Vec<(Frame, usize)>,
    /// Operators since the expression boundary at the top level (frames carry their own).
    top_ops: usize,
    brackets: usize,
    ops: usize,
}

impl Scan {
    fn cost(&self) -> usize {
        self.brackets.saturating_mul(BRACKET_BYTES).saturating_add(self.ops.saturating_mul(OPERATOR_BYTES))
    }

    fn push(&mut self, frame: Frame) {
        self.frames.push((frame, 0));
        self.brackets += usize::from(frame != Frame::Template);
    }

    fn pop(&mut self) {
        if let Some((frame, ops)) = self.frames.pop() {
            self.brackets -= usize::from(frame != Frame::Template);
            self.ops -= ops;
        }
    }

    fn current(&mut self) -> &mut usize {
        match self.frames.last_mut() {
            Some((_, ops)) => ops,
            None => &mut self.top_ops,
        }
    }

    /// One more operator in the current expression.
    fn charge(&mut self) {
        *self.current() += 1;
        self.ops += 1;
    }

    /// The current expression ended.
    fn boundary(&mut self) {
        let ops = std::mem::take(self.current());
        self.ops -= ops;
    }

    fn top(&self) -> Option<Frame> {
        self.frames.last().map(|(f, _)| *f)
    }
}

/// An upper bound on the native stack, in bytes, that Boa's parser takes for `src`.
pub fn parse_stack_estimate(src: &str) -> usize {
    let chars: Vec<char> = src.chars().collect();
    let mut scan = Scan { frames: Vec::new(), top_ops: 0, brackets: 0, ops: 0 };
    let mut worst = 0usize;
    let mut last = Last::Open;
    let mut newline_since_last = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if scan.top() == Some(Frame::Template) {
            // Template text: only `${`, the closing backquote and escapes matter.
            match c {
                '\\' => i += 1,
                '`' => {
                    scan.pop();
                    last = Last::Complete;
                }
                '$' if chars.get(i + 1) == Some(&'{') => {
                    scan.push(Frame::Substitution);
                    last = Last::Open;
                    i += 1;
                }
                _ => {}
            }
            i += 1;
            worst = worst.max(scan.cost());
            continue;
        }
        match c {
            '\n' | '\r' | '\u{2028}' | '\u{2029}' => newline_since_last = true,
            c if c.is_whitespace() => {}
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    newline_since_last |= chars[i] == '\n';
                    i += 1;
                }
                i += 2;
                continue;
            }
            '\'' | '"' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if newline_since_last && last == Last::Complete {
                    scan.boundary();
                }
                last = Last::Complete;
                newline_since_last = false;
            }
            '`' => {
                scan.push(Frame::Template);
                newline_since_last = false;
            }
            '(' | '[' | '{' => {
                scan.push(match c {
                    '(' => Frame::Paren,
                    '[' => Frame::Bracket,
                    _ => Frame::Brace,
                });
                last = Last::Open;
                newline_since_last = false;
            }
            ')' | ']' | '}' => {
                let wanted = match c {
                    ')' => Frame::Paren,
                    ']' => Frame::Bracket,
                    _ => Frame::Brace,
                };
                // A `}` may close a substitution, returning to its template's text.
                if (c == '}' && scan.top() == Some(Frame::Substitution)) || scan.top() == Some(wanted) {
                    scan.pop();
                } else if let Some(at) = scan.frames.iter().rposition(|(f, _)| *f == wanted) {
                    // Unbalanced (a bracket inside a regular expression literal): close to it.
                    while scan.frames.len() > at {
                        scan.pop();
                    }
                }
                last = Last::Complete;
                newline_since_last = false;
            }
            ';' | ',' => {
                scan.boundary();
                last = Last::Open;
                newline_since_last = false;
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '\\' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '\\' | '.')) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let keyword = NESTING_KEYWORDS.contains(&word.as_str());
                if keyword {
                    scan.charge();
                } else if newline_since_last && last == Last::Complete {
                    // A newline between two complete tokens: a new statement (if it is not,
                    // the operators that follow are still charged).
                    scan.boundary();
                }
                last = if keyword { Last::Open } else { Last::Complete };
                newline_since_last = false;
                worst = worst.max(scan.cost());
                continue;
            }
            // Every other character is punctuation: an operator, or part of one.
            _ => {
                scan.charge();
                last = Last::Open;
                newline_since_last = false;
            }
        }
        i += 1;
        worst = worst.max(scan.cost());
    }
    worst
}

/// Refuses a source that would take more than [`PARSE_STACK_BUDGET`] of stack to parse.
pub fn check_source(what: &str, src: &str) -> Result<(), String> {
    let estimate = parse_stack_estimate(src);
    if estimate > PARSE_STACK_BUDGET {
        return Err(format!(
            "{what} nests too deeply to be parsed: about {} KiB of stack against the {} KiB allowed (brackets cost {} KiB a level, operators in one expression {} KiB each)",
            estimate / 1024,
            PARSE_STACK_BUDGET / 1024,
            BRACKET_BYTES / 1024,
            OPERATOR_BYTES / 1024
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(src: &str) -> f64 {
        parse_stack_estimate(src) as f64
    }

    #[test]
    fn brackets_of_every_kind_are_charged_per_level() {
        for (open, close) in [("(", ")"), ("[", "]"), ("{", "}"), ("`${", "}`")] {
            let src = format!("{}0{}", open.repeat(100), close.repeat(100));
            assert!(levels(&src) >= (100 * BRACKET_BYTES) as f64, "{open}: {}", levels(&src));
            assert!(levels(&src) < (110 * BRACKET_BYTES) as f64, "{open}: {}", levels(&src));
        }
        assert!(check_source("x", &format!("{}{}", "[".repeat(2200), "]".repeat(2200))).is_ok());
        assert!(check_source("x", &format!("{}{}", "[".repeat(2300), "]".repeat(2300))).is_err());
    }

    #[test]
    fn operator_chains_are_charged_until_the_expression_ends() {
        for chain in ["!", "~", "-", "x=", "1?", "x=>", "1**", "1+", "typeof ", "new ", "if(1)", "if(0){}else "] {
            let src = format!("{}0", chain.repeat(30_000));
            assert!(check_source("x", &src).is_err(), "a chain of 30,000 {chain:?} is refused");
            let src = format!("{}0", chain.repeat(1_000));
            assert!(check_source("x", &src).is_ok(), "a chain of 1,000 {chain:?} is not");
        }
        // Statements, commas and newlines between complete tokens end an expression.
        for sep in [";", ",", "\n"] {
            let src = "x = a + b".to_owned() + sep;
            assert!(check_source("x", &src.repeat(30_000)).is_ok(), "{sep:?} ends the expression");
        }
        // A newline after an operator does not.
        assert!(check_source("x", &"1 +\n".repeat(30_000)).is_err());
        assert!(check_source("x", &format!("{}0", "typeof\n".repeat(30_000))).is_err());
    }

    #[test]
    fn strings_comments_and_template_text_are_skipped() {
        let inert = [
            format!("'{}'", "(".repeat(10_000)),
            format!("\"{}\\\"{}\"", "[".repeat(10_000), "{".repeat(10)),
            format!("`{}`", "(".repeat(10_000)),
            format!("// {}\n0", "(".repeat(10_000)),
            format!("/* {} */ 0", "{".repeat(10_000)),
        ];
        for src in &inert {
            assert!(levels(src) < (4 * BRACKET_BYTES) as f64, "{}: {}", &src[..20], levels(src));
        }
        // A template's substitutions are code again.
        let src = format!("`a${{{}}}b`", "(".repeat(50) + &")".repeat(50));
        assert!(levels(&src) >= (51 * BRACKET_BYTES) as f64);
    }

    #[test]
    fn real_code_is_far_below_the_budget() {
        let js = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/engine/prelude.js")).expect("prelude");
        assert!(parse_stack_estimate(&js) < PARSE_STACK_BUDGET / 16, "{}", parse_stack_estimate(&js));
        let logging =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/logging/src/logging.js")).expect("sample");
        assert!(parse_stack_estimate(&logging) < PARSE_STACK_BUDGET / 16, "{}", parse_stack_estimate(&logging));
        // A long module in the style of minified code: one statement per line, no semicolons.
        let module: String = (0..50_000).map(|i| format!("const v{i} = f(a, b) + g(c)\n")).collect();
        assert!(check_source("x", &module).is_ok());
    }
}
