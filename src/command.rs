//! The command-string grammar (README.md, `parseCommand`), split without a shell: what a
//! shell would reject or mangle is refused with its column.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCommand {
    pub program: String,
    pub args: Vec<String>,
}

/// Columns are 1-based and count characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("Command string cannot be empty")]
    Empty,
    #[error(
        "Unterminated {} quote ({quote}) opened at column {column}: close it with a matching {quote}",
        if *quote == '"' { "double" } else { "single" }
    )]
    UnterminatedQuote { quote: char, column: usize },
    #[error("Trailing backslash at column {column}: a backslash must be followed by the character it escapes")]
    TrailingBackslash { column: usize },
    #[error("NUL byte at column {column}: a program or argument cannot contain NUL")]
    NulByte { column: usize },
    #[error("The program name is empty: the first word of the command must name a program")]
    EmptyProgram,
}

/// JavaScript's `\s` (Unicode White_Space plus the BOM), as the TypeScript runtime split.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

pub fn parse_command(command: &str) -> Result<ParsedCommand, CommandError> {
    if command.chars().all(is_separator) {
        return Err(CommandError::Empty);
    }
    if let Some(at) = command.chars().position(|c| c == '\0') {
        return Err(CommandError::NulByte { column: at + 1 });
    }
    let mut words = Vec::new();
    // A word exists once any of its characters or quotes has been seen: `""` is an empty word.
    let mut word: Option<String> = None;
    let mut quote: Option<(char, usize)> = None;
    let mut chars = command.chars().enumerate();
    while let Some((index, c)) = chars.next() {
        let column = index + 1;
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => word.get_or_insert_default().push(escaped),
                None => return Err(CommandError::TrailingBackslash { column }),
            },
            '"' | '\'' => match quote {
                Some((open, _)) if open == c => quote = None,
                Some(_) => word.get_or_insert_default().push(c),
                None => {
                    quote = Some((c, column));
                    word.get_or_insert_default();
                }
            },
            c if quote.is_none() && is_separator(c) => words.extend(word.take()),
            c => word.get_or_insert_default().push(c),
        }
    }
    if let Some((quote, column)) = quote {
        return Err(CommandError::UnterminatedQuote { quote, column });
    }
    words.extend(word);
    let mut words = words.into_iter();
    let program = words.next().unwrap_or_default();
    if program.is_empty() {
        return Err(CommandError::EmptyProgram);
    }
    Ok(ParsedCommand {
        program,
        args: words.collect(),
    })
}

/// The inverse of [`parse_command`]: words that need it are double-quoted, `"` and `\` escaped.
pub fn quote_command(program: &str, args: &[String]) -> Result<String, CommandError> {
    if program.is_empty() {
        return Err(CommandError::EmptyProgram);
    }
    let mut out = String::new();
    for word in std::iter::once(program).chain(args.iter().map(String::as_str)) {
        if !out.is_empty() {
            out.push(' ');
        }
        if let Some(at) = word.chars().position(|c| c == '\0') {
            let column = out.chars().count() + at + 1;
            return Err(CommandError::NulByte { column });
        }
        let special = |c| is_separator(c) || matches!(c, '"' | '\'' | '\\');
        if !word.is_empty() && !word.chars().any(special) {
            out.push_str(word);
        } else {
            out += &format!("\"{}\"", word.replace('\\', r"\\").replace('"', r#"\""#));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_program_and_arguments_survive_quoting(
            program in "[^\\x00]{1,12}",
            args in proptest::collection::vec("[^\\x00]{0,12}", 0..6),
        ) {
            let parsed = parse_command(&quote_command(&program, &args).unwrap()).unwrap();
            proptest::prop_assert_eq!((parsed.program, parsed.args), (program, args));
        }

        #[test]
        fn parsing_never_panics(input in "\\PC{0,40}|[ \"'\\\\a-c]{0,20}") {
            let _ = parse_command(&input);
        }
    }

    #[test]
    fn quoting_round_trips() {
        let words = [
            "plain",
            "",
            "two words",
            "it's",
            "say \"hi\"",
            "back\\slash",
            "tab\there",
            "new\nline",
            "日本 語",
            "🎬",
            "trailing\\",
            "'",
            "\"",
            "$(rm -rf /)",
            "a;b|c",
            "\u{3000}wide",
            "--flag=x y",
        ];
        for program in ["ffmpeg", "/usr/bin/my render", "it's"] {
            let args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            let quoted = quote_command(program, &args).unwrap();
            let parsed = parse_command(&quoted).unwrap();
            assert_eq!(
                (parsed.program.as_str(), parsed.args),
                (program, args),
                "{quoted}"
            );
        }
        assert_eq!(
            quote_command("echo", &["a b".into(), "c".into()]).unwrap(),
            r#"echo "a b" c"#
        );
        assert_eq!(
            quote_command("", &[]).unwrap_err(),
            CommandError::EmptyProgram
        );
        assert!(matches!(
            quote_command("x", &["a\0".into()]).unwrap_err(),
            CommandError::NulByte { .. }
        ));
    }

    fn split(command: &str) -> Vec<String> {
        let parsed = parse_command(command).unwrap();
        std::iter::once(parsed.program).chain(parsed.args).collect()
    }

    #[test]
    fn whitespace_runs_separate_words() {
        assert_eq!(
            split("  ffmpeg   -i \t in.mp4\n out.mp4  "),
            ["ffmpeg", "-i", "in.mp4", "out.mp4"]
        );
    }

    #[test]
    fn unicode_whitespace_separates_like_javascript() {
        assert_eq!(split("a\u{a0}b\u{3000}c\u{feff}d"), ["a", "b", "c", "d"]);
    }

    #[test]
    fn quotes_group_and_are_removed() {
        assert_eq!(
            split(r#"echo "hello world" 'a  b'"#),
            ["echo", "hello world", "a  b"]
        );
    }

    #[test]
    fn other_quote_kind_is_literal() {
        assert_eq!(
            split(r#"x title="My 'Awesome' Video""#),
            ["x", "title=My 'Awesome' Video"]
        );
        assert_eq!(split(r#"x 'say "hi"'"#), ["x", r#"say "hi""#]);
    }

    #[test]
    fn quotes_inside_a_word() {
        assert_eq!(
            split(r#"x key="a b" pre'mid'post"#),
            ["x", "key=a b", "premidpost"]
        );
    }

    #[test]
    fn empty_quotes_give_empty_words() {
        assert_eq!(split(r#"x "" '' a"#), ["x", "", "", "a"]);
    }

    #[test]
    fn backslash_escapes_everywhere() {
        assert_eq!(split(r"x a\ b"), ["x", "a b"]);
        assert_eq!(split(r#"x "He said \"Hi\"""#), ["x", r#"He said "Hi""#]);
        assert_eq!(split(r"x 'it\'s'"), ["x", "it's"]);
        assert_eq!(split(r"x \\ \$HOME"), ["x", "\\", "$HOME"]);
    }

    #[test]
    fn shell_metacharacters_are_plain() {
        assert_eq!(
            split("echo a;b | c && $(d) > e"),
            ["echo", "a;b", "|", "c", "&&", "$(d)", ">", "e"]
        );
    }

    #[test]
    fn multibyte_text_survives() {
        assert_eq!(split("echo \"日本 語\" 🎬"), ["echo", "日本 語", "🎬"]);
    }

    #[test]
    fn empty_and_blank_are_refused() {
        for input in ["", "   ", "\t\n", "\u{3000}"] {
            let err = parse_command(input).unwrap_err();
            assert_eq!(err, CommandError::Empty);
            assert_eq!(err.to_string(), "Command string cannot be empty");
        }
    }

    #[test]
    fn unterminated_quotes_are_refused_with_their_column() {
        assert_eq!(
            parse_command(r#"echo "abc"#).unwrap_err(),
            CommandError::UnterminatedQuote {
                quote: '"',
                column: 6
            }
        );
        let err = parse_command("echo 'abc").unwrap_err();
        assert_eq!(
            err,
            CommandError::UnterminatedQuote {
                quote: '\'',
                column: 6
            }
        );
        assert!(err.to_string().contains("single quote"), "{err}");
        assert!(err.to_string().contains("column 6"), "{err}");
    }

    #[test]
    fn trailing_backslash_is_refused() {
        let err = parse_command(r"echo abc\").unwrap_err();
        assert_eq!(err, CommandError::TrailingBackslash { column: 9 });
        assert!(err.to_string().contains("column 9"));
    }

    #[test]
    fn nul_bytes_are_refused() {
        assert_eq!(
            parse_command("echo a\0b").unwrap_err(),
            CommandError::NulByte { column: 7 }
        );
        assert_eq!(
            parse_command("echo \\\0").unwrap_err(),
            CommandError::NulByte { column: 7 }
        );
    }

    #[test]
    fn an_empty_program_is_refused() {
        assert_eq!(
            parse_command(r#""" arg"#).unwrap_err(),
            CommandError::EmptyProgram
        );
    }
}
