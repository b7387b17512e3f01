//! The names that stay on this machine and never go up: dot files, editors', browsers' and
//! libraries' temp files, SQLite's side files, `sites-versions/`, `node_modules/`.

/// Names that stay in the mirror and never reach the platform (architecture.md, "Push" 6): any
/// segment starting with `.`, editors', browsers' and libraries' temp names (docs/semantics.md
/// names the program each comes from), `sites-versions/`, `node_modules/`.
pub fn is_local_only(rel_path: &str) -> bool {
    let mut segments = rel_path.split('/').filter(|s| !s.is_empty()).peekable();
    if segments.peek() == Some(&"sites-versions") {
        return true;
    }
    rel_path.split('/').filter(|s| !s.is_empty()).any(|name| {
        name.starts_with('.')
            || name == "node_modules"
            || name.ends_with('~')
            || [
                ".swp",
                ".swo",
                ".swx",
                ".tmp",
                ".part",
                ".crdownload",
                ".kate-swp",
                "___jb_tmp___",
                "___jb_old___",
            ]
            .iter()
            .any(|ext| name.ends_with(ext))
            || (name.starts_with('#') && name.ends_with('#'))
            || name.starts_with("~$")
            || name == "4913"
            || is_python_temp(name)
            || is_numbered_temp(name)
            || is_sqlite_side_file(name)
    })
}

/// SQLite's files beside a database `name`: the write-ahead log (`name-wal`), its shared
/// memory index (`name-shm`), the rollback journal (`name-journal`) and the super-journal of a
/// transaction over several databases (`name-mj` and 8 hex digits). They belong to the
/// processes that have the database open and mean nothing anywhere else (the database itself
/// goes up once they are folded into it). Decided: any name with such an ending, so a real
/// file called `travel-journal` (no extension) stays local too.
fn is_sqlite_side_file(name: &str) -> bool {
    if let Some((db, super_journal)) = name.rsplit_once("-mj") {
        if !db.is_empty()
            && super_journal.len() == 8
            && super_journal.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return true;
        }
    }
    ["-wal", "-shm", "-journal"]
        .iter()
        .any(|end| name.len() > end.len() && name.ends_with(end))
}

/// Python's `tempfile` (`mkstemp`, `NamedTemporaryFile`): `tmp` and 8 random characters of
/// `a-z0-9_`, then the caller's suffix. Decided: any such name, so that none ever reaches the
/// platform (a real file named like `tmpsettings.html` stays local too;
/// requiring a digit let 6 in 100 of Python's names through).
fn is_python_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("tmp") else {
        return false;
    };
    let random = rest.split('.').next().unwrap_or(rest);
    random.len() == 8
        && random
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A random number for a name: Node's write-file-atomic (`name.ext.NNNNNNNNN`, a 32-bit hash
/// in decimal after a name that has an extension) and Go's `os.CreateTemp` with no pattern (the
/// number alone). Six to ten digits, so a dated name (`notes.2024`) stays a file.
fn is_numbered_temp(name: &str) -> bool {
    let numbered = |s: &str| (6..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if numbered(name) {
        return true;
    }
    match name.rsplit_once('.') {
        Some((before, last)) => numbered(last) && before.contains('.'),
        None => false,
    }
}

#[cfg(test)]
mod local_only_tests {
    use super::is_local_only;

    #[test]
    fn local_only_names() {
        for name in [
            ".git/config",
            "a/.b.html",
            "post.html~",
            ".post.html.swp",
            "x.swo",
            "x.swx",
            "a.tmp",
            "f.part",
            "f.crdownload",
            "#post.html#",
            "~$doc.docx",
            "4913",
            "sites-versions/a/b.html",
            "node_modules/x.js",
            "a/node_modules/b",
        ] {
            assert!(is_local_only(name), "{name}");
        }
        for name in [
            "post.html",
            "blog/post.html",
            "img/logo.png",
            "a/sites-versions/b.png",
            "x49130",
        ] {
            assert!(!is_local_only(name), "{name}");
        }
    }

    #[test]
    fn temp_names_of_common_programs_stay_local() {
        for temp in [
            "tmpab12cd_e",
            "tmpfrqdvdqp.html",
            "tmp3k_9xq0z.html",
            "package.json.3812739123",
            "index.html.12345678",
            "1234567890",
            "notes.txt___jb_tmp___",
            "notes.txt___jb_old___",
            ".notes.txt.kate-swp",
            "notes.txt.kate-swp",
            ".~lock.report.odt#",
            "app.db-wal",
            "app.db-shm",
            "app.db-journal",
            "data.sqlite-mj1A2b3C4d",
            ".notes.txt.Ab12Cd",
            "lu12345abcd.tmp",
            "#notes.txt#",
            "~$report.docx",
        ] {
            assert!(is_local_only(temp), "{temp}");
        }
        for real in [
            "tmp.html",
            "notes.2024",
            "photo.20240101",
            "20240",
            "report-2024.html",
            "tmpab12cd.html",
            "journal.html",
            "app.db",
            "-wal",
            "blog-journal.html",
        ] {
            assert!(!is_local_only(real), "{real}");
        }
    }
}
