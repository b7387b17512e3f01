//! Logging: `tracing` to standard error and to the plain-text sync log
//! (`$XDG_STATE_HOME/hyperclay/sync.log`), one line per event, rotated at 10 MiB with three old
//! files kept so it can never fill the disk. Secrets are never logged (credentials print as `..`).
//!
//! Every field's text is made printable here, in the one field formatter both outputs use: a
//! control character (ESC, BEL, a newline inside a value...) or a character that reorders text
//! is written escaped (`\u{1b}`), so a name from the platform or a file name can neither drive the
//! terminal of someone reading the log (`tail -f`) nor forge a line. No call site has to think
//! of it. Colours only on a terminal (and never with `NO_COLOR`); the module of each line only
//! with `-v`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const ROTATE_AT: u64 = 10 * 1024 * 1024;
const KEEP: usize = 3;

/// A log file that rotates itself by size: `sync.log`, `sync.log.1` ... `sync.log.3`.
#[derive(Clone)]
pub struct RotatingLog {
    inner: Arc<Mutex<(PathBuf, Option<File>, u64)>>,
}

impl RotatingLog {
    pub fn open(path: &Path) -> io::Result<RotatingLog> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            inner: Arc::new(Mutex::new((path.to_path_buf(), Some(file), size))),
        })
    }

    fn rotate(path: &Path) -> io::Result<File> {
        for i in (1..KEEP).rev() {
            let _ = fs::rename(
                format!("{}.{i}", path.display()),
                format!("{}.{}", path.display(), i + 1),
            );
        }
        let _ = fs::rename(path, format!("{}.1", path.display()));
        OpenOptions::new().create(true).append(true).open(path)
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (path, file, size) = &mut *guard;
        if *size + buf.len() as u64 > ROTATE_AT {
            *file = Some(Self::rotate(path)?);
            *size = 0;
        }
        let f = file
            .as_mut()
            .ok_or_else(|| io::Error::other("log closed"))?;
        f.write_all(buf)?;
        *size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingLog {
    type Writer = RotatingLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Whether `c` is written escaped: control characters (C0, DEL, C1) and the characters that
/// reorder the text around them (bidirectional overrides and isolates).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes text through to `W` with every character [`needs_escape`] names escaped (`\u{1b}`,
/// `\n`, `\t`).
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            if needs_escape(c) {
                self.0.write_str(&s[plain..i])?;
                match c {
                    '\n' => self.0.write_str("\\n")?,
                    '\t' => self.0.write_str("\\t")?,
                    '\r' => self.0.write_str("\\r")?,
                    c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                }
                plain = i + c.len_utf8();
            }
        }
        self.0.write_str(&s[plain..])
    }
}

/// `text` as the log writes it (for tests and for messages built elsewhere).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = fmt::Write::write_str(&mut Escaping(&mut out), text);
    out
}

/// One field: the message as it is, any other as `name=value`, both escaped.
fn write_field(writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    let name = field.name();
    // What the `log` crate's records carry about themselves (the formatter shows it already).
    if name.starts_with("log.") {
        return Ok(());
    }
    if name != "message" {
        write!(writer, "{}=", name.trim_start_matches("r#"))?;
    }
    fmt::write(&mut Escaping(writer), format_args!("{value:?}"))
}

type Fields = tracing_subscriber::field::delimited::Delimited<
    &'static str,
    format::FieldFn<fn(&mut Writer<'_>, &Field, &dyn fmt::Debug) -> fmt::Result>,
>;

/// The field formatter of every output.
fn fields() -> Fields {
    format::debug_fn(write_field as fn(&mut Writer<'_>, &Field, &dyn fmt::Debug) -> fmt::Result)
        .delimited(" ")
}

fn filter(verbose: bool) -> EnvFilter {
    // fuser's session drop tries to unmount again after our `fusermount3 -u` and warns that it
    // failed; its own comment says that is expected when someone else unmounted. Not worth a
    // line in every log.
    let default = match verbose {
        true => "hyperclay=debug,warn,fuser::mnt=error",
        false => "hyperclay=info,warn,fuser::mnt=error",
    };
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Colours on standard error: only on a terminal, and not when `NO_COLOR` is set (no-color.org).
fn stderr_colours() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && io::stderr().is_terminal()
}

/// The standard-error layer both set-ups share: printable fields, colours only on a terminal,
/// module paths only with `-v`.
fn stderr_layer<S>(verbose: bool) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(fields())
        .with_ansi(stderr_colours())
        .with_target(verbose)
        .with_writer(io::stderr)
}

/// Logs to standard error only (the dev platform, short commands). `verbose` (`-v`): debug lines
/// too, and each line names its module.
pub fn init_stderr(verbose: bool) {
    let _ = tracing_subscriber::registry()
        .with(filter(verbose))
        .with(stderr_layer(verbose))
        .try_init();
}

/// Logs to standard error and to the sync log at `path` (as [`init_stderr`]; never coloured).
pub fn init_with_file(path: &Path, verbose: bool) -> io::Result<()> {
    let file = RotatingLog::open(path)?;
    let _ = tracing_subscriber::registry()
        .with(filter(verbose))
        .with(stderr_layer(verbose))
        .with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(fields())
                .with_ansi(false)
                .with_target(verbose)
                .with_writer(file),
        )
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_reordering_are_escaped() {
        assert_eq!(
            printable("a\u{1b}]2;pwned\u{7}\u{1b}[2J\nb\tc\u{9b}d\u{202e}é"),
            "a\\u{1b}]2;pwned\\u{7}\\u{1b}[2J\\nb\\tc\\u{9b}d\\u{202e}é"
        );
        assert_eq!(printable("plain/path.html"), "plain/path.html");
    }

    #[test]
    fn rotates_by_size_and_keeps_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.log");
        let mut log = RotatingLog::open(&path).unwrap();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..45 {
            log.write_all(&line).unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() <= ROTATE_AT);
        assert!(dir.path().join("sync.log.3").exists());
        assert!(!dir.path().join("sync.log.4").exists());
    }
}
