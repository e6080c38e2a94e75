//! No import circles between the rooms of `service/src`, nor between the files
//! of `api/src/graphql`.
//!
//! A circle (`a` uses `b`, `b` uses `a`) means neither side can be read,
//! tested or changed alone, and it usually says a type or a rule sits in the
//! wrong room. The compiler accepts circles inside a crate, so this test is
//! what keeps them out.
//!
//! How the graph is made, from the source text alone (no compiler):
//! - each `.rs` file is the module its path says (`ledger/book.rs` is
//!   `crate::ledger::book`, `ledger/mod.rs` is `crate::ledger`); inline
//!   `mod x { … }` blocks (unit tests) count as part of their file;
//! - a file references what its `use` trees name (nested groups, `self`,
//!   `as`, globs) and every path in its code that starts with `crate::`,
//!   `super::`, `self::`, a child module or a name it imported; also string
//!   literals that are themselves a path (`complexity = "crate::…"`), since
//!   the macro turns them into code. Comments and doc links do not count;
//! - a path that names an item a module re-exports (`pub use book::Flush`,
//!   `pub use ops::*`, `crate::Db`) counts as a reference to the module the
//!   item comes from, and to the module it is named through: a re-export
//!   does not hide a circle;
//! - references are reduced to *rooms*: the top-level module (`allowances`,
//!   `ledger`, …) and, inside `ledger/`, `notifications/` and `catalog/`, the
//!   child module (`ledger/book`). For `api/src/graphql` every file but
//!   `mod.rs` (their parent) is a room.
//!
//! Parent and child: a child using its parent's `mod.rs` (`super::Wallet`)
//! and a parent using its children (`pub use book::…`, or a facade function
//! that calls them) is how a Rust module is built, so those references are
//! not edges. Edges are between top-level rooms (`allowances` →
//! `ledger`, whichever child the reference lands in) and between siblings
//! (`ledger/book` → `ledger/read`). A circle is a strongly connected set of
//! rooms in that graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;

/// Known circles, each by the edge that closes it: the reference that
/// should not exist, and the move that would remove it. The graph without
/// these edges must have no circle, so a circle made by a new reference
/// fails; and each of these must still close a circle, so an entry whose
/// circle is gone fails too (delete it then). What this can't see: a new
/// reference that makes another circle through one of these edges; it shows
/// once the edge goes.
///
/// `service` has none left: the last (`db` ↔ `secrets`) went when the key
/// and the `Sealer` a `Db` handle carries moved to `sealing.rs`, below
/// `db`, and `secrets.rs` kept the work done on a handle (the start-up
/// pass, the rotation), above it.
const KNOWN_SERVICE: &[Known] = &[];

/// As [`KNOWN_SERVICE`], for the files of `api/src/graphql`. These three are the schema's own circles: GraphQL types point at each
/// other, so the files that hold them do; no move removes them short of one
/// file for all three areas.
const KNOWN_GRAPHQL: &[Known] = &[
    Known {
        from: "customers",
        to: "commerce",
        why: "Customer.subscriptions is commerce's Subscription; Subscription.customer is Customer",
    },
    Known {
        from: "customers",
        to: "ledger",
        why: "Customer.wallets is ledger's Wallet; Wallet.customer is Customer",
    },
    Known {
        from: "ledger",
        to: "commerce",
        why: "Grant.order is commerce's TopUpOrder; TopUpOrder.grant is ledger's Grant",
    },
];

/// A reference that closes a known circle, and the move that would remove it.
struct Known {
    from: &'static str,
    to: &'static str,
    why: &'static str,
}

#[test]
fn service_has_no_import_circles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&dir, "");
    let graph = Graph::build(&files, &[], &["ledger", "notifications", "catalog"]);
    assert!(
        graph.edges.len() > 40,
        "too few edges: is the parser reading the files?"
    );
    check(&graph, KNOWN_SERVICE, "service/src");
}

#[test]
fn graphql_files_have_no_import_circles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src/graphql");
    let files = read_tree(&dir, "graphql/");
    let graph = Graph::build(&files, &["graphql"], &[]);
    assert!(
        graph.edges.len() > 20,
        "too few edges: is the parser reading the files?"
    );
    check(&graph, KNOWN_GRAPHQL, "api/src/graphql");
}

/// The parser and the circle finder on a small tree made up here, so the
/// two tests above can fail: a circle hidden behind a nested `use` group,
/// a `super::` path, a re-export (either side of it) and a glob re-export
/// is found; comments, strings, unit-test modules and parent/child
/// references are not edges.
#[test]
fn finds_circles_through_groups_super_and_re_exports() {
    let file = |path: &str, text: &str| (path.to_owned(), text.to_owned());
    let files = vec![
        file(
            "lib.rs",
            "pub mod a; pub mod b; pub mod c; pub mod d; pub mod e; pub use d::Thing;",
        ),
        // The parent uses its children: not an edge. It reaches d through
        // the crate root's re-export: a -> d.
        file(
            "a/mod.rs",
            "mod x; mod y; pub use y::*; pub(crate) use x::{Ex as Renamed};\n\
             fn f() { x::go(); }\nfn n() -> crate::Thing { todo!() }\npub struct Own;",
        ),
        // a/x uses a/y through the parent's glob re-export of y; `Own` is
        // the parent's own, so x -> a is child to parent: not an edge.
        file("a/x.rs", "use super::{Why, Own};\npub struct Ex;"),
        // a/y uses a/x through the parent's renaming re-export; the comment
        // and the string that does not start with a path are not read.
        file(
            "a/y.rs",
            "// use super::super::b::h;\npub struct Why;\n\
             fn g() -> super::Renamed { let _ = \"see crate::b::h\"; todo!() }",
        ),
        // b -> c and b -> a through a nested group, b -> d through a string
        // that is a path (as `#[graphql(complexity = \"crate::…\")]`).
        file(
            "b.rs",
            "use crate::{c::{self, Sea}, a};\n#[x(y = \"crate::d::Thing\")]\nfn h() {}",
        ),
        // c -> b through a path in code; c -> e through e's re-export of
        // c's own item.
        file(
            "c.rs",
            "pub struct Sea;\nfn k() { crate::b::h(); }\nfn j() -> crate::e::Sea { todo!() }",
        ),
        // e -> c: e re-exports c's item. Its unit tests' references (to d)
        // are not edges.
        file(
            "e.rs",
            "pub use crate::c::Sea;\n#[cfg(test)]\nmod tests { use crate::d::Thing; }",
        ),
        // d -> a/x through a path in code, reduced to d -> a.
        file(
            "d.rs",
            "pub struct Thing;\nfn m() { let _ = crate::a::x::Ex; }",
        ),
    ];
    let graph = Graph::build(&files, &[], &["a"]);
    let edges: Vec<(&str, &str, &str)> = graph
        .edges
        .iter()
        .map(|((a, b), at)| (a.as_str(), b.as_str(), at[0].as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("a", "d", "a/mod.rs:3"),
            ("a/x", "a/y", "a/x.rs:1"),
            ("a/y", "a/x", "a/y.rs:3"),
            ("b", "a", "b.rs:1"),
            ("b", "c", "b.rs:1"),
            ("b", "d", "b.rs:2"),
            ("c", "b", "c.rs:2"),
            ("c", "e", "c.rs:3"),
            ("d", "a", "d.rs:2"),
            ("e", "c", "e.rs:1"),
        ]
    );
    let all: Vec<(String, String)> = graph.edges.keys().cloned().collect();
    let circles: Vec<Vec<String>> = circles_of(&all).into_iter().map(|c| c.rooms).collect();
    let expected: [&[&str]; 3] = [&["a", "d"], &["a/x", "a/y"], &["b", "c", "e"]];
    assert_eq!(circles, expected);
    // Known edges that close every circle pass.
    let known = |edges: &[(&'static str, &'static str)]| -> Vec<Known> {
        edges
            .iter()
            .map(|&(from, to)| Known {
                from,
                to,
                why: "test",
            })
            .collect()
    };
    assert_eq!(
        verdict(
            &graph,
            &known(&[("d", "a"), ("a/y", "a/x"), ("c", "b"), ("e", "c")])
        ),
        Ok(())
    );
    // A circle not closed by a known edge fails, with a reference on each
    // of its edges; a known edge that closes no circle fails too.
    let err = verdict(
        &graph,
        &known(&[("d", "a"), ("c", "b"), ("e", "c"), ("b", "d")]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "circle: a/x -> a/y -> a/x\n  a/x -> a/y  (a/x.rs:1)\n  a/y -> a/x  (a/y.rs:3)\n\
         known edge b -> d no longer closes a circle (it was there because: test): \
         remove it from the known list\n"
    );
}

/// Fails with the circles found (one reference per edge, as `file:line`)
/// and the known circles that are gone.
fn check(graph: &Graph, known: &[Known], what: &str) {
    if let Err(message) = verdict(graph, known) {
        panic!("import circles in {what}:\n{message}");
    }
}

fn verdict(graph: &Graph, known: &[Known]) -> Result<(), String> {
    let key = |k: &Known| (k.from.to_owned(), k.to.to_owned());
    let rest: Vec<(String, String)> = graph
        .edges
        .keys()
        .filter(|e| !known.iter().any(|k| key(k) == **e))
        .cloned()
        .collect();
    let mut message = graph.report(&circles_of(&rest));
    let all: Vec<(String, String)> = graph.edges.keys().cloned().collect();
    let circles = circles_of(&all);
    for k in known {
        let closes = circles.iter().any(|c| c.edges.contains(&key(k)));
        if !closes {
            message.push_str(&format!(
                "known edge {} -> {} no longer closes a circle (it was there because: {}): \
                 remove it from the known list\n",
                k.from, k.to, k.why
            ));
        }
    }
    if message.is_empty() {
        Ok(())
    } else {
        Err(message)
    }
}

/// Every `.rs` file under `dir`, as (path relative to the crate's source
/// root, text), in path order.
fn read_tree(dir: &Path, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_owned();
        if path.is_dir() {
            out.extend(read_tree(&path, &format!("{prefix}{name}/")));
        } else if name.ends_with(".rs") {
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((format!("{prefix}{name}"), text));
        }
    }
    out
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    /// A literal that is not a path; its text does not matter here.
    Lit,
}

/// The tokens without `#[cfg(test)] mod name { … }`: a unit test sets its
/// world up through whichever rooms it needs (a tenant, a grant) and is not
/// part of the structure.
fn without_test_modules(toks: Vec<(Tok, u32)>) -> Vec<(Tok, u32)> {
    let attr = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let starts = toks[i..]
            .iter()
            .map(|(t, _)| t)
            .take(attr.len())
            .eq(attr.iter())
            && matches!(toks.get(i + attr.len()), Some((Tok::Ident(w), _)) if w == "mod")
            && matches!(toks.get(i + attr.len() + 2), Some((Tok::Punct('{'), _)));
        if !starts {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        i += attr.len() + 3;
        let mut depth = 1;
        while i < toks.len() && depth > 0 {
            match toks[i].0 {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => depth -= 1,
                _ => {}
            }
            i += 1;
        }
    }
    out
}

/// Tokens with their 1-based line. Comments (doc comments too) and
/// lifetimes are dropped; string, char and number literals are one `Lit`
/// each, except a string that starts with `crate::`/`super::`, which is
/// lexed as code.
fn lex(src: &str) -> Vec<(Tok, u32)> {
    let s: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1u32, Vec::new());
    let at = |i: usize| s.get(i).copied().unwrap_or('\0');
    let ident_char = |c: char| c == '_' || c.is_alphanumeric();
    while i < s.len() {
        let c = s[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= s.len() {
                    break;
                } else if s[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += u32::from(s[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == '"') {
            let start_line = line;
            i += if c == '"' { 1 } else { 2 };
            let start = i;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' {
                    i += 1;
                }
                line += u32::from(at(i) == '\n');
                i += 1;
            }
            let text: String = s[start..i.min(s.len())].iter().collect();
            i += 1;
            if text.starts_with("crate::") || text.starts_with("super::") {
                out.extend(lex(&text).into_iter().map(|(t, _)| (t, start_line)));
            } else {
                out.push((Tok::Lit, start_line));
            }
        } else if (c == 'r'
            && (at(i + 1) == '"' || (at(i + 1) == '#' && matches!(at(i + 2), '"' | '#'))))
            || ((c == 'b' || c == 'c') && at(i + 1) == 'r' && matches!(at(i + 2), '"' | '#'))
        {
            // Raw string: r"…", r#"…"#, br#"…"#, cr"…".
            let start_line = line;
            i += if c == 'r' { 1 } else { 2 };
            let mut hashes = 0;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1; // the opening quote
            while i < s.len() {
                if s[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += u32::from(s[i] == '\n');
                i += 1;
            }
            out.push((Tok::Lit, start_line));
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            i += if c == '\'' { 1 } else { 2 };
            if at(i) == '\\' {
                // Escaped char literal: '\n', '\'', '\u{1F600}'.
                i += 2;
                while i < s.len() && s[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push((Tok::Lit, line));
            } else if at(i + 1) == '\'' {
                i += 2;
                out.push((Tok::Lit, line));
            } else {
                // A lifetime or label: skip its name.
                while ident_char(at(i)) {
                    i += 1;
                }
            }
        } else if c == 'r' && at(i + 1) == '#' && ident_char(at(i + 2)) {
            i += 2; // raw identifier r#type: lexed as `type` below
        } else if c.is_ascii_digit() {
            while ident_char(at(i)) {
                i += 1;
            }
            out.push((Tok::Lit, line));
        } else if ident_char(c) {
            let start = i;
            while ident_char(at(i)) {
                i += 1;
            }
            out.push((Tok::Ident(s[start..i].iter().collect()), line));
        } else if c == ':' && at(i + 1) == ':' {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------- parsing

/// What one module says about names: the items it defines, the names its
/// `use` declarations bind and the modules it glob-imports. Paths are as
/// written, relative to the module.
#[derive(Default)]
struct Names {
    items: BTreeSet<String>,
    binds: BTreeMap<String, Vec<String>>,
    globs: Vec<Vec<String>>,
}

/// A path as written in a module, to resolve once every file is read.
struct Ref {
    scope: Vec<String>,
    path: Vec<String>,
    file: String,
    line: u32,
}

/// The module a source file is, from its path: `lib.rs`/`mod.rs` are their
/// directory's module.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

const ITEM_KEYWORDS: &[&str] = &[
    "fn", "struct", "enum", "type", "const", "static", "trait", "union", "mod",
];

/// Reads one file: its modules' names (inline `mod x { … }` included) and
/// the paths it writes.
fn parse(file: &str, text: &str, names: &mut BTreeMap<Vec<String>, Names>, refs: &mut Vec<Ref>) {
    let toks = without_test_modules(lex(text));
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, t: Tok| toks.get(i).map(|(x, _)| x) == Some(&t);
    // (module path, brace depth inside it)
    let mut scopes: Vec<(Vec<String>, usize)> = vec![(module_of(file), 0)];
    names.entry(module_of(file)).or_default();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let (scope, scope_depth) = scopes.last().cloned().expect("file scope");
        let at_module_level = depth == scope_depth;
        match &toks[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth < scope_depth {
                    scopes.pop();
                }
            }
            Tok::Ident(w) if w == "use" && !is(i + 1, Tok::Punct('<')) => {
                i += 1;
                let mut leaves = Vec::new();
                use_tree(&toks, &mut i, Vec::new(), &mut leaves);
                let module = names.entry(scope.clone()).or_default();
                for leaf in leaves {
                    match leaf.bind {
                        Bind::Name(name) => {
                            module.binds.insert(name, leaf.path.clone());
                        }
                        Bind::Glob => module.globs.push(leaf.path.clone()),
                        Bind::Nothing => {}
                    }
                    refs.push(Ref {
                        scope: scope.clone(),
                        path: leaf.path,
                        file: file.into(),
                        line: leaf.line,
                    });
                }
                continue;
            }
            Tok::Ident(w) if w == "macro_rules" && is(i + 1, Tok::Punct('!')) => {
                if let (true, Some(name)) = (at_module_level, ident(i + 2)) {
                    names
                        .entry(scope.clone())
                        .or_default()
                        .items
                        .insert(name.into());
                }
            }
            Tok::Ident(w) if ITEM_KEYWORDS.contains(&w.as_str()) && at_module_level => {
                if let Some(name) = ident(i + 1).filter(|n| !ITEM_KEYWORDS.contains(n)) {
                    names
                        .entry(scope.clone())
                        .or_default()
                        .items
                        .insert(name.into());
                    if w == "mod" && is(i + 2, Tok::Punct('{')) {
                        let mut inner = scope.clone();
                        inner.push(name.into());
                        names.entry(inner.clone()).or_default();
                        scopes.push((inner, depth + 1));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                }
            }
            Tok::Ident(first) if !(i > 0 && is(i - 1, Tok::Sep)) && is(i + 1, Tok::Sep) => {
                let line = toks[i].1;
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while is(j, Tok::Sep) {
                    match ident(j + 1) {
                        Some(next) => path.push(next.into()),
                        None => break,
                    }
                    j += 2;
                }
                refs.push(Ref {
                    scope,
                    path,
                    file: file.into(),
                    line,
                });
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

enum Bind {
    Name(String),
    Glob,
    Nothing,
}

struct Leaf {
    path: Vec<String>,
    bind: Bind,
    line: u32,
}

/// One use tree from `toks[*i]` to its end (`;`, `,` or `}` of a group),
/// with `prefix` the path of the groups around it.
fn use_tree(toks: &[(Tok, u32)], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Leaf>) {
    let mut path = prefix;
    loop {
        let Some((tok, line)) = toks.get(*i) else {
            return;
        };
        match tok {
            Tok::Sep => *i += 1,
            Tok::Ident(segment) => {
                *i += 1;
                if matches!(toks.get(*i), Some((Tok::Sep, _))) {
                    path.push(segment.clone());
                    continue;
                }
                let mut bind = segment.clone();
                if segment != "self" {
                    path.push(segment.clone());
                } else if let Some(last) = path.last() {
                    bind = last.clone();
                }
                if matches!(toks.get(*i), Some((Tok::Ident(w), _)) if w == "as") {
                    if let Some((Tok::Ident(alias), _)) = toks.get(*i + 1) {
                        bind = alias.clone();
                    }
                    *i += 2;
                }
                let bind = if bind == "_" {
                    Bind::Nothing
                } else {
                    Bind::Name(bind)
                };
                out.push(Leaf {
                    path,
                    bind,
                    line: *line,
                });
                return;
            }
            Tok::Punct('*') => {
                *i += 1;
                out.push(Leaf {
                    path,
                    bind: Bind::Glob,
                    line: *line,
                });
                return;
            }
            Tok::Punct('{') => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        None => return,
                        Some((Tok::Punct('}'), _)) => {
                            *i += 1;
                            return;
                        }
                        Some((Tok::Punct(','), _)) => *i += 1,
                        Some(_) => use_tree(toks, i, path.clone(), out),
                    }
                }
            }
            _ => return,
        }
    }
}

// ---------------------------------------------------------------- the graph

struct Graph {
    /// (from room, to room) → the references making it, as `file:line`.
    edges: BTreeMap<(String, String), Vec<String>>,
}

#[derive(Clone)]
struct Circle {
    rooms: Vec<String>,
    edges: Vec<(String, String)>,
}

/// Resolves paths against the modules of one crate.
struct Resolver<'a> {
    names: &'a BTreeMap<Vec<String>, Names>,
}

impl Resolver<'_> {
    fn is_module(&self, path: &[String]) -> bool {
        self.names.contains_key(path)
    }

    /// The absolute path a path written in `scope` names, or `None` when it
    /// starts outside the crate (`std::…`, `Self::…`, a local name).
    fn absolute(&self, scope: &[String], path: &[String], depth: u32) -> Option<Vec<String>> {
        let (first, rest) = path.split_first()?;
        if depth > 8 {
            return None;
        }
        let mut base: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" => scope.to_vec(),
            "super" => scope[..scope.len().checked_sub(1)?].to_vec(),
            _ => {
                let module = self.names.get(scope)?;
                let mut child = scope.to_vec();
                child.push(first.clone());
                if let Some(target) = module.binds.get(first) {
                    let mut abs = self.absolute(scope, target, depth + 1)?;
                    abs.extend(rest.iter().cloned());
                    return Some(abs);
                } else if self.is_module(&child) || module.items.contains(first) {
                    child.extend(rest.iter().cloned());
                    return Some(child);
                }
                let from_glob = module.globs.iter().find_map(|glob| {
                    let source = self.absolute(scope, glob, depth + 1)?;
                    self.exports(&source, first, depth + 1).then_some(source)
                })?;
                let mut abs = from_glob;
                abs.extend(path.iter().cloned());
                return Some(abs);
            }
        };
        // `super::super::x`, `self::super::x`
        let mut rest = rest;
        while let Some((_, tail)) = rest.split_first().filter(|(n, _)| *n == "super") {
            base.pop()?;
            rest = tail;
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// Whether the module at `module` makes `name` visible (defines,
    /// imports or glob-imports it, or has it as a child module).
    fn exports(&self, module: &[String], name: &str, depth: u32) -> bool {
        let Some(m) = self.names.get(module) else {
            return false;
        };
        let mut child = module.to_vec();
        child.push(name.into());
        depth <= 8
            && (m.items.contains(name)
                || m.binds.contains_key(name)
                || self.is_module(&child)
                || m.globs.iter().any(|g| {
                    self.absolute(module, g, depth + 1).is_some_and(|source| {
                        source != module && self.exports(&source, name, depth + 1)
                    })
                }))
    }

    /// The module that defines what the absolute `path` names, following
    /// re-exports (`crate::Db` is `crate::db`'s), and the modules whose
    /// re-exports it went through (the crate root for `crate::Db`).
    fn owner(&self, path: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
        let mut path = path.to_vec();
        let mut module: Vec<String> = Vec::new();
        let mut via = Vec::new();
        let mut i = 0;
        for _ in 0..64 {
            let Some(segment) = path.get(i).cloned() else {
                break;
            };
            let mut child = module.clone();
            child.push(segment.clone());
            if self.is_module(&child) {
                module = child;
                i += 1;
                continue;
            }
            let Some(names) = self.names.get(&module) else {
                break;
            };
            if names.items.contains(&segment) {
                break;
            }
            let target = names
                .binds
                .get(&segment)
                .and_then(|t| self.absolute(&module, t, 0))
                .or_else(|| {
                    names.globs.iter().find_map(|g| {
                        let mut source = self.absolute(&module, g, 0)?;
                        if source == module || !self.exports(&source, &segment, 0) {
                            return None;
                        }
                        source.push(segment.clone());
                        Some(source)
                    })
                });
            match target {
                Some(mut target) if target != path[..=i] => {
                    target.extend(path[i + 1..].iter().cloned());
                    path = target;
                    via.push(std::mem::take(&mut module));
                    i = 0;
                }
                _ => break,
            }
        }
        (module, via)
    }
}

impl Graph {
    /// The graph of `files` (paths relative to the crate's source root),
    /// with rooms under `scope` (`["graphql"]`: only `crate::graphql::…`
    /// counts) and the `split` directories' children as rooms of their own.
    fn build(files: &[(String, String)], scope: &[&str], split: &[&str]) -> Self {
        let mut names = BTreeMap::new();
        let mut refs = Vec::new();
        for (file, text) in files {
            parse(file, text, &mut names, &mut refs);
        }
        let resolver = Resolver { names: &names };
        let room = |module: &[String]| -> Option<String> {
            let rest = module
                .strip_prefix(&scope.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..])?;
            match rest {
                [] => None,
                [top, child, ..] if split.contains(&top.as_str()) => Some(format!("{top}/{child}")),
                [top, ..] => Some(top.clone()),
            }
        };
        let top = |room: &str| room.split('/').next().unwrap_or(room).to_owned();
        let mut edges = BTreeMap::new();
        for r in &refs {
            let Some(from) = room(&module_of(&r.file)) else {
                continue;
            };
            let Some(path) = resolver.absolute(&r.scope, &r.path, 0) else {
                continue;
            };
            // The module the path names through counts as much as the one
            // that defines the item: a re-export does not hide a circle.
            let (owner, via) = resolver.owner(&path);
            for to in via.iter().chain([&owner]).filter_map(|m| room(m)) {
                let edge = if top(&from) != top(&to) {
                    (top(&from), top(&to))
                } else if from.contains('/') && to.contains('/') && from != to {
                    (from.clone(), to)
                } else {
                    continue; // the same room, or parent and child
                };
                let at = format!("{}:{}", r.file, r.line);
                let refs: &mut Vec<String> = edges.entry(edge).or_default();
                if !refs.contains(&at) {
                    refs.push(at);
                }
            }
        }
        Graph { edges }
    }

    /// One shortest circle through the first room of each set, then every
    /// edge inside the set, each with one reference that makes it.
    fn report(&self, circles: &[Circle]) -> String {
        let mut out = String::new();
        for c in circles {
            let start = &c.rooms[0];
            // Breadth-first from `start` back to itself inside the set.
            let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
            let mut queue = VecDeque::from([start]);
            let mut back = None;
            while let Some(n) = queue.pop_front() {
                for (a, b) in &c.edges {
                    if a != n {
                        continue;
                    }
                    if b == start {
                        back = Some(n);
                        break;
                    }
                    if !came_from.contains_key(b) {
                        came_from.insert(b, n);
                        queue.push_back(b);
                    }
                }
                if back.is_some() {
                    break;
                }
            }
            let mut cycle = vec![start.clone()];
            let mut n = back.expect("a strongly connected set has a circle through each room");
            while n != start {
                cycle.push(n.clone());
                n = came_from[n];
            }
            cycle[1..].reverse();
            cycle.push(start.clone());
            out.push_str(&format!("circle: {}\n", cycle.join(" -> ")));
            if c.rooms.len() > 2 {
                out.push_str(&format!(
                    "  (one of the circles among {})\n",
                    c.rooms.join(", ")
                ));
            }
            for edge in &c.edges {
                let refs = &self.edges[edge];
                let more = match refs.len() {
                    1 => String::new(),
                    n if std::env::var_os("MODULE_GRAPH_ALL").is_some() => {
                        format!(", {}", refs[1..n].join(", "))
                    }
                    n => format!(" and {} more; MODULE_GRAPH_ALL=1 lists them", n - 1),
                };
                out.push_str(&format!(
                    "  {} -> {}  ({}{more})\n",
                    edge.0, edge.1, refs[0]
                ));
            }
        }
        out
    }
}

/// The strongly connected sets of two or more rooms (Tarjan), each with
/// its rooms sorted and the edges inside it.
fn circles_of(edges: &[(String, String)]) -> Vec<Circle> {
    let mut next: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
        next.entry(b).or_default();
    }
    struct State<'a> {
        next: BTreeMap<&'a String, Vec<&'a String>>,
        index: BTreeMap<&'a String, usize>,
        low: BTreeMap<&'a String, usize>,
        stack: Vec<&'a String>,
        sets: Vec<Vec<&'a String>>,
    }
    fn visit<'a>(n: &'a String, st: &mut State<'a>) {
        let i = st.index.len();
        st.index.insert(n, i);
        st.low.insert(n, i);
        st.stack.push(n);
        for m in st.next[n].clone() {
            if !st.index.contains_key(m) {
                visit(m, st);
                let low = st.low[n].min(st.low[m]);
                st.low.insert(n, low);
            } else if st.stack.contains(&m) {
                let low = st.low[n].min(st.index[m]);
                st.low.insert(n, low);
            }
        }
        if st.low[n] == st.index[n] {
            let mut set = Vec::new();
            while let Some(m) = st.stack.pop() {
                set.push(m);
                if m == n {
                    break;
                }
            }
            st.sets.push(set);
        }
    }
    let nodes: Vec<&String> = next.keys().copied().collect();
    let mut st = State {
        next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        sets: Vec::new(),
    };
    for n in nodes {
        if !st.index.contains_key(n) {
            visit(n, &mut st);
        }
    }
    let mut circles: Vec<Circle> = st
        .sets
        .into_iter()
        .filter(|s| s.len() > 1)
        .map(|s| {
            let mut rooms: Vec<String> = s.into_iter().cloned().collect();
            rooms.sort();
            let edges = edges
                .iter()
                .filter(|(a, b)| rooms.contains(a) && rooms.contains(b))
                .cloned()
                .collect();
            Circle { rooms, edges }
        })
        .collect();
    circles.sort_by(|a, b| a.rooms.cmp(&b.rooms));
    circles
}
