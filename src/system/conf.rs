//! Reading dnsmasq configuration the way dnsmasq does: `name=value` lines, `conf-file=` and
//! `conf-dir=` chains (with dnsmasq's file-name filters and order), and command-line options.
//! Only what virtmasq needs to know is interpreted; every option is kept in order.

use std::fs;
use std::path::{Path, PathBuf};

/// One option, from a file or the command line, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    /// Long option name without dashes (`interface`, `bind-interfaces`).
    pub name: String,
    /// Its value, if any.
    pub value: Option<String>,
    /// The file it came from; None for the command line.
    pub source: Option<PathBuf>,
}

/// A `conf-dir=<dir>[,<ext>...]`: `*.conf` includes only matching names, a plain `.ext`
/// excludes names ending in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfDir {
    /// The directory, as written (not under any test root).
    pub path: PathBuf,
    /// Suffixes that exclude a file.
    pub excludes: Vec<String>,
    /// Suffixes of which one must match, when any is given.
    pub includes: Vec<String>,
}

impl ConfDir {
    /// Parses the value of `conf-dir=` / `-7`.
    pub fn parse(value: &str) -> Self {
        let mut parts = value.split(',');
        let path = PathBuf::from(parts.next().unwrap_or("").trim());
        let mut excludes = Vec::new();
        let mut includes = Vec::new();
        for p in parts.map(str::trim).filter(|p| !p.is_empty()) {
            match p.strip_prefix('*') {
                Some(suffix) => includes.push(suffix.to_owned()),
                None => excludes.push(p.to_owned()),
            }
        }
        Self {
            path,
            excludes,
            includes,
        }
    }

    /// Whether dnsmasq reads a file of this name from the directory (dnsmasq skips names
    /// ending in `~`, starting with `.`, and `#...#`, then applies the suffix lists).
    pub fn accepts(&self, name: &str) -> bool {
        if name.is_empty()
            || name.ends_with('~')
            || name.starts_with('.')
            || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        {
            return false;
        }
        if self.excludes.iter().any(|e| name.ends_with(e.as_str())) {
            return false;
        }
        self.includes.is_empty() || self.includes.iter().any(|i| name.ends_with(i.as_str()))
    }
}

/// Splits one configuration line into an option, or None for blanks and comments.
pub fn parse_line(line: &str) -> Option<(String, Option<String>)> {
    let line = strip_comment(line).trim();
    if line.is_empty() {
        return None;
    }
    match line.split_once('=') {
        Some((n, v)) => Some((n.trim().to_owned(), Some(v.trim().to_owned()))),
        None => Some((line.to_owned(), None)),
    }
}

/// dnsmasq ends a line at a `#` that starts it or follows white space (outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut prev_white = true;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted && prev_white => return &line[..i],
            _ => {}
        }
        prev_white = c.is_whitespace();
    }
    line
}

/// Short command-line options virtmasq cares about, mapped to long names, and whether each
/// takes a value.
const SHORT: &[(char, &str, bool)] = &[
    ('i', "interface", true),
    ('I', "except-interface", true),
    ('a', "listen-address", true),
    ('z', "bind-interfaces", false),
    ('p', "port", true),
    ('7', "conf-dir", true),
    ('C', "conf-file", true),
    ('u', "user", true),
    ('F', "dhcp-range", true),
    ('x', "pid-file", true),
    ('l', "dhcp-leasefile", true),
    ('r', "resolv-file", true),
    ('s', "domain", true),
    ('c', "cache-size", true),
    ('m', "mx-host", true),
    ('t', "mx-target", true),
];

/// Parses command-line words (`--name=value`, `--name value` for names that take one,
/// `-i eth0`, `-ieth0`, `-z`). Unknown short options are kept by their letter.
pub fn parse_args(words: &[String]) -> Vec<Opt> {
    let mut out = Vec::new();
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        let opt = |name: &str, value: Option<String>| Opt {
            name: name.to_owned(),
            value,
            source: None,
        };
        if w == "--" {
            // getopt's end of options: what follows is not an option (dnsmasq refuses it).
            break;
        }
        if let Some(long) = w.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => out.push(opt(n, Some(v.to_owned()))),
                // `--interface eth0`: the options of SHORT take their value as the next word.
                None if SHORT.iter().any(|(_, n, takes)| *n == long && *takes) => {
                    out.push(opt(long, it.next().cloned()))
                }
                None => out.push(opt(long, None)),
            }
        } else if let Some(short) = w.strip_prefix('-') {
            let mut chars = short.chars();
            let Some(c) = chars.next() else { continue };
            let rest: String = chars.collect();
            let (name, takes) = SHORT
                .iter()
                .find(|(s, _, _)| *s == c)
                .map(|(_, n, t)| (*n, *t))
                .unwrap_or(("", false));
            let name = if name.is_empty() {
                c.to_string()
            } else {
                name.to_owned()
            };
            let value = if !takes {
                None
            } else if !rest.is_empty() {
                Some(rest)
            } else {
                it.next().cloned()
            };
            out.push(opt(&name, value));
        }
    }
    out
}

/// Reads options from files, following `conf-file=` and `conf-dir=` as dnsmasq does. Paths in
/// the configuration are absolute on the system; `root` maps them for reading (`/` normally, a
/// fixture directory in tests).
#[derive(Debug)]
pub struct Reader<'a> {
    root: &'a Path,
    /// Every option read, in order.
    pub opts: Vec<Opt>,
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
    /// Every conf-dir met, with the files it gave.
    pub dirs: Vec<(ConfDir, Vec<PathBuf>)>,
    /// Files that could not be read, with why.
    pub problems: Vec<String>,
}

impl<'a> Reader<'a> {
    /// A reader over `root`.
    pub fn new(root: &'a Path) -> Self {
        Self {
            root,
            opts: Vec::new(),
            files: Vec::new(),
            dirs: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// `path` as seen under the root.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Reads one file and whatever it includes.
    pub fn read_file(&mut self, path: &Path, depth: usize) {
        if depth > 16 || self.files.iter().any(|f| f == path) {
            return;
        }
        let text = match fs::read_to_string(self.host_path(path)) {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(format!("{}: {e}", path.display()));
                return;
            }
        };
        self.files.push(path.to_owned());
        for line in text.lines() {
            if let Some((name, value)) = parse_line(line) {
                self.add(
                    Opt {
                        name,
                        value,
                        source: Some(path.to_owned()),
                    },
                    depth,
                );
            }
        }
    }

    /// Applies one option, following includes.
    pub fn add(&mut self, opt: Opt, depth: usize) {
        match (opt.name.as_str(), &opt.value) {
            ("conf-file", Some(v)) => {
                let p = PathBuf::from(v);
                self.opts.push(opt);
                self.read_file(&p, depth + 1);
            }
            ("conf-dir", Some(v)) => {
                let dir = ConfDir::parse(v);
                self.opts.push(opt);
                self.read_dir(dir, depth + 1);
            }
            _ => self.opts.push(opt),
        }
    }

    fn read_dir(&mut self, dir: ConfDir, depth: usize) {
        let mut names: Vec<String> = match fs::read_dir(self.host_path(&dir.path)) {
            Ok(entries) => entries
                .flatten()
                // dnsmasq stat()s entries, so a symlink to a file counts.
                .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| dir.accepts(n))
                .collect(),
            Err(e) => {
                self.problems.push(format!("{}: {e}", dir.path.display()));
                Vec::new()
            }
        };
        // dnsmasq sorts with strcmp: byte order, which String's Ord is.
        names.sort();
        let files: Vec<PathBuf> = names.iter().map(|n| dir.path.join(n)).collect();
        self.dirs.push((dir, files.clone()));
        for f in files {
            self.read_file(&f, depth);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_comments() {
        assert_eq!(parse_line("  # x"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(
            parse_line("bind-interfaces"),
            Some(("bind-interfaces".into(), None))
        );
        assert_eq!(
            parse_line("interface = eth0 # lan"),
            Some(("interface".into(), Some("eth0".into())))
        );
        assert_eq!(
            parse_line("dhcp-option=option:domain-search,a#b"),
            Some((
                "dhcp-option".into(),
                Some("option:domain-search,a#b".into())
            ))
        );
    }

    #[test]
    fn conf_dir_filters() {
        let debian = ConfDir::parse("/etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new");
        assert!(debian.accepts("virtmasq-lab.conf") && debian.accepts("libvirt-daemon"));
        assert!(!debian.accepts("x.dpkg-old") && !debian.accepts(".tmp") && !debian.accepts("a~"));
        assert!(!debian.accepts("#a#"));
        let only_conf = ConfDir::parse("/etc/dnsmasq.d/,*.conf");
        assert!(only_conf.accepts("virtmasq-lab.conf") && !only_conf.accepts("README"));
    }

    #[test]
    fn command_line_words() {
        let words: Vec<String> = [
            "-7",
            "/etc/dnsmasq.d,.x",
            "--local-service",
            "-ieth1",
            "-z",
            "--port=5353",
            "-u",
            "dnsmasq",
            "--interface",
            "eth2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let opts: Vec<(String, Option<String>)> = parse_args(&words)
            .into_iter()
            .map(|o| (o.name, o.value))
            .collect();
        assert_eq!(
            opts,
            vec![
                ("conf-dir".into(), Some("/etc/dnsmasq.d,.x".into())),
                ("local-service".into(), None),
                ("interface".into(), Some("eth1".into())),
                ("bind-interfaces".into(), None),
                ("port".into(), Some("5353".into())),
                ("user".into(), Some("dnsmasq".into())),
                ("interface".into(), Some("eth2".into())),
            ]
        );
    }

    /// Found by fuzzing: `--` was read as an option with an empty name, and the words after
    /// it as options.
    #[test]
    fn double_dash_ends_the_options() {
        let words: Vec<String> = ["-z", "--", "--port=53"].map(String::from).to_vec();
        let names: Vec<String> = parse_args(&words).into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["bind-interfaces"]);
    }

    #[test]
    fn follows_includes_in_dnsmasq_order() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        fs::create_dir_all(etc.join("d")).unwrap();
        fs::write(etc.join("main.conf"), "conf-dir=/etc/d,.bak\nport=5353\n").unwrap();
        fs::write(etc.join("d/b.conf"), "interface=b\n").unwrap();
        fs::write(etc.join("d/a.conf"), "interface=a\nconf-file=/etc/extra\n").unwrap();
        fs::write(etc.join("d/c.bak"), "interface=c\n").unwrap();
        fs::write(etc.join("d/.hidden"), "interface=h\n").unwrap();
        fs::write(etc.join("extra"), "bind-interfaces\n").unwrap();
        let mut r = Reader::new(root.path());
        r.read_file(Path::new("/etc/main.conf"), 0);
        let names: Vec<_> = r
            .opts
            .iter()
            .map(|o| format!("{}={}", o.name, o.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            names,
            [
                "conf-dir=/etc/d,.bak",
                "interface=a",
                "conf-file=/etc/extra",
                "bind-interfaces=",
                "interface=b",
                "port=5353"
            ]
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }
}
