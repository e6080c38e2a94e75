//! No function in `service` takes more than [`SAME_TYPE_MAX`] positional
//! parameters of one type: past that, a call like `f(a, b, c, d, e)` can
//! swap two of them and still compile. Bundle them in a struct with named
//! fields instead (as `webhooks::Received`, `ledger::Made`).
//!
//! Read from the source: every `fn` item's parameter list, split at its
//! top-level commas; a parameter's type is what follows its top-level `:`,
//! lifetimes and spaces dropped (`&'a str` and `&str` are one type).
//! Comments and unit-test modules count too: a test helper is read as
//! often as the code it tests.

use std::{fs, path::Path};

const SAME_TYPE_MAX: usize = 4;

#[test]
fn no_function_takes_more_than_four_parameters_of_one_type() {
    let mut found = Vec::new();
    let mut functions = 0;
    for (file, text) in rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")) {
        for (line, name, params) in functions_of(&text) {
            functions += 1;
            let mut types: Vec<(String, usize)> = Vec::new();
            for ty in params.iter().filter_map(|p| type_of(p)) {
                match types.iter_mut().find(|(t, _)| *t == ty) {
                    Some((_, n)) => *n += 1,
                    None => types.push((ty, 1)),
                }
            }
            for (ty, n) in types {
                if n > SAME_TYPE_MAX {
                    found.push(format!(
                        "{file}:{line} fn {name}: {n} parameters of type {ty}"
                    ));
                }
            }
        }
    }
    assert!(
        functions > 500,
        "only {functions} functions read: is the parser reading the files?"
    );
    assert!(
        found.is_empty(),
        "too many parameters of one type:\n{}",
        found.join("\n")
    );
}

/// Where a bare `Uuid` becomes typed: the id types themselves.
const BOUNDARY: &[&str] = &["ids.rs"];

/// Parameters every module may still take as a bare `Uuid`, and why.
const BARE_EVERYWHERE: &[(&str, &str)] = &[(
    "tenant_id",
    "the tenant comes from the principal (Principal.tenant_id: Uuid), never from a client's \
     input; converting it touches every module at once",
)];

/// A `pub fn` of `service` takes ids typed (`CustomerId`, `WalletId`, …:
/// `service::ids`), not a bare `Uuid` named `…_id`, `id` or after a kind
/// (`customer`, `wallet`, …), so two ids can't be swapped and still
/// compile. Ids are parsed where they enter (the API's `decode_id`) and
/// become `Uuid` only at the entity boundary.
#[test]
fn public_functions_take_typed_ids() {
    let mut offenders: Vec<(String, String)> = Vec::new();
    let mut checked = 0;
    for (file, text) in rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")) {
        for (name, params) in public_functions_of(&text) {
            checked += 1;
            for param in &params {
                if let Some((pname, ty)) = bare_id(param) {
                    offenders.push((file.clone(), format!("fn {name}: {pname}: {ty}")));
                }
            }
        }
    }
    assert!(checked > 300, "only {checked} pub fns read");
    let module = |file: &str| file.trim_start_matches("src/").to_owned();
    let mut found: Vec<String> = offenders
        .iter()
        .filter(|(f, _)| !BOUNDARY.contains(&module(f).as_str()))
        .map(|(f, o)| format!("{f}: {o}"))
        .collect();
    found.dedup();
    assert!(
        found.is_empty(),
        "bare Uuid ids (take `CustomerId`, `WalletId`, … from service::ids; \
         `X::from_uuid(model.id)` at the entity boundary; an id whose kind is the \
         caller's: generic over `T: TypedId`):\n{}",
        found.join("\n")
    );
}

/// `Some((name, type))` when a parameter is an id passed as a bare `Uuid`
/// (`customer_id: Uuid`, `wallet: Option<Uuid>`), or ids as bare UUIDs
/// (`wallet_ids: &[Uuid]`).
fn bare_id(param: &str) -> Option<(String, String)> {
    let ty = type_of(param)?;
    let name = param
        .split(':')
        .next()?
        .trim()
        .trim_start_matches("mut ")
        .to_owned();
    const KINDS: &[&str] = &[
        "id",
        "tenant",
        "customer",
        "credit_system",
        "wallet",
        "grant",
        "entry",
        "hold",
        "product",
        "plan",
        "feature",
        "subscription",
        "order",
        "invoice",
        "refund",
        "endpoint",
        "delivery",
    ];
    let named_as_id = name.ends_with("_id") || KINDS.contains(&name.as_str());
    let bare = matches!(
        ty.as_str(),
        "Uuid" | "Option<Uuid>" | "uuid::Uuid" | "&Uuid"
    );
    let named_as_ids = name.ends_with("_ids") || name == "ids";
    let bare_many = matches!(ty.as_str(), "&[Uuid]" | "Vec<Uuid>" | "&Vec<Uuid>");
    let bare_id = (named_as_id && bare) || (named_as_ids && bare_many);
    (bare_id && !BARE_EVERYWHERE.iter().any(|(n, _)| *n == name)).then_some((name, ty))
}

/// Each `pub fn` (not `pub(crate)`, not in a `#[cfg(test)]` module): its
/// name and parameters.
fn public_functions_of(src: &str) -> Vec<(String, Vec<String>)> {
    let src = match src.find("#[cfg(test)]\nmod tests") {
        Some(at) => &src[..at],
        None => src,
    };
    let code = code_of(src);
    let lines: Vec<&str> = code.lines().collect();
    functions_of(src)
        .into_iter()
        .filter(|(line, name, _)| {
            let l = lines[line - 1].trim_start();
            [
                format!("pub fn {name}"),
                format!("pub async fn {name}"),
                format!("pub const fn {name}"),
            ]
            .iter()
            .any(|p| l.starts_with(p.as_str()))
        })
        .map(|(_, name, params)| (name, params))
        .collect()
}

#[test]
fn bare_ids_are_told_from_typed_ones() {
    let src = "pub async fn open(\n    tenant_id: Uuid,\n    customer_id: CustomerId,\n    wallet: Uuid,\n) {}\n\
               pub(crate) fn inner(grant_id: Uuid) {}\n\
               pub fn other(count: Uuid, hold_id: Option<Uuid>, ids: &[Uuid], n: &[Uuid]) {}\n\
               #[cfg(test)]\nmod tests {\n    pub fn helper(entry_id: Uuid) {}\n}";
    let found: Vec<(String, Vec<(String, String)>)> = public_functions_of(src)
        .into_iter()
        .map(|(name, params)| (name, params.iter().filter_map(|p| bare_id(p)).collect()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "open".to_owned(),
                vec![("wallet".to_owned(), "Uuid".to_owned())]
            ),
            (
                "other".to_owned(),
                vec![
                    ("hold_id".to_owned(), "Option<Uuid>".to_owned()),
                    ("ids".to_owned(), "&[Uuid]".to_owned())
                ]
            ),
        ]
    );
}

/// The parser on made-up source, so the test above can fail.
#[test]
fn reads_parameters_through_generics_patterns_and_comments() {
    let src = "/// fn doc(a: u8, b: u8, c: u8, d: u8, e: u8)\n\
               pub(crate) async fn five<'a, F: Fn(u8) -> u8>(\n    a: &'a str,\n    b: &str, // c: &str\n    \
               (c, d): (&str, &str),\n    e: HashMap<u8, (u8, u8)>,\n    f: &'a str,\n    g: &str,\n) {}\n\
               fn method(&mut self, x: Uuid) {}";
    let fns = functions_of(src);
    assert_eq!(fns.len(), 2);
    let (line, name, params) = &fns[0];
    assert_eq!((*line, name.as_str()), (2, "five"));
    let types: Vec<Option<String>> = params.iter().map(|p| type_of(p)).collect();
    assert_eq!(
        types,
        [
            Some("&str".to_owned()),
            Some("&str".to_owned()),
            Some("(&str,&str)".to_owned()),
            Some("HashMap<u8,(u8,u8)>".to_owned()),
            Some("&str".to_owned()),
            Some("&str".to_owned()),
        ]
    );
    let (_, name, params) = &fns[1];
    assert_eq!(name, "method");
    assert_eq!(
        params.iter().filter_map(|p| type_of(p)).collect::<Vec<_>>(),
        ["Uuid"]
    );
}

fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
            out.push((
                name.display().to_string(),
                fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    out
}

/// The source without `//` comments (to the end of the line, outside
/// string literals) and without string and char literals' contents.
fn code_of(src: &str) -> String {
    let s: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            '/' if s.get(i + 1) == Some(&'/') => {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
            '"' => {
                out.push('"');
                i += 1;
                while i < s.len() && s[i] != '"' {
                    if s[i] == '\\' {
                        i += 1;
                    } else if s[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                out.push('"');
                i += 1;
            }
            // A char literal ('x', '\n', '(') — not a lifetime ('a).
            '\'' if s.get(i + 2) == Some(&'\'') || s.get(i + 1) == Some(&'\\') => {
                out.push_str("' '");
                i += if s.get(i + 1) == Some(&'\\') { 4 } else { 3 };
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Each `fn` item: its line, name and parameters (as written).
fn functions_of(src: &str) -> Vec<(usize, String, Vec<String>)> {
    let code: Vec<char> = code_of(src).chars().collect();
    let word = |i: usize, w: &str| {
        w.chars()
            .enumerate()
            .all(|(k, c)| code.get(i + k) == Some(&c))
            && (i == 0 || !is_ident(code[i - 1]))
            && !code.get(i + w.len()).copied().is_some_and(is_ident)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if !word(i, "fn") {
            i += 1;
            continue;
        }
        let line = code[..i].iter().filter(|&&c| c == '\n').count() + 1;
        let mut j = i + 2;
        while code.get(j).is_some_and(|c| c.is_whitespace()) {
            j += 1;
        }
        let start = j;
        while code.get(j).copied().is_some_and(is_ident) {
            j += 1;
        }
        if j == start {
            // `fn(u8) -> u8`, a function pointer type.
            i += 2;
            continue;
        }
        let name: String = code[start..j].iter().collect();
        while code.get(j).is_some_and(|c| c.is_whitespace()) {
            j += 1;
        }
        if code.get(j) == Some(&'<') {
            j = skip_generics(&code, j);
        }
        while code.get(j).is_some_and(|c| c.is_whitespace()) {
            j += 1;
        }
        if code.get(j) != Some(&'(') {
            i = j;
            continue;
        }
        let (params, end) = split_top_level(&code, j);
        out.push((line, name, params));
        i = end;
    }
    out
}

fn is_ident(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The index after the `<…>` starting at `at` (`->` is not a bracket).
fn skip_generics(code: &[char], at: usize) -> usize {
    let mut depth = 0;
    let mut j = at;
    while j < code.len() {
        match code[j] {
            '<' => depth += 1,
            '>' if j > 0 && code[j - 1] == '-' => {}
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// The comma-separated parts of the parenthesized list starting at `at`,
/// and the index after its `)`.
fn split_top_level(code: &[char], at: usize) -> (Vec<String>, usize) {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut depth = 0i32;
    let mut j = at + 1;
    while j < code.len() {
        let c = code[j];
        match c {
            '(' | '[' | '{' | '<' => depth += 1,
            '>' if code[j - 1] == '-' => {}
            ')' | ']' | '}' | '>' => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut part));
                j += 1;
                continue;
            }
            _ => {}
        }
        part.push(c);
        j += 1;
    }
    parts.push(part);
    let parts = parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    (parts, j + 1)
}

/// A parameter's type, spaces and lifetimes dropped; `None` for `self`.
fn type_of(param: &str) -> Option<String> {
    let chars: Vec<char> = param.chars().collect();
    let mut depth = 0;
    for (k, &c) in chars.iter().enumerate() {
        match c {
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' => depth -= 1,
            ':' if depth == 0
                && chars.get(k + 1) != Some(&':')
                && (k == 0 || chars[k - 1] != ':') =>
            {
                let ty: String = chars[k + 1..].iter().collect();
                return Some(without_lifetimes(&ty));
            }
            _ => {}
        }
    }
    None
}

fn without_lifetimes(ty: &str) -> String {
    let mut out = String::new();
    let mut chars = ty.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            while chars.peek().copied().is_some_and(is_ident) {
                chars.next();
            }
            // `&'a str` → `&str`; `Foo<'a>` → `Foo<>`.
            if chars.peek() == Some(&',') {
                chars.next();
            }
            continue;
        }
        if !c.is_whitespace() {
            out.push(c);
        }
    }
    out.replace("<>", "")
}
