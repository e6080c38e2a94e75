//! Bounds on what one GraphQL document may ask of the server, checked
//! before anything runs (README "The API's conventions" lists them):
//!
//! 1. **The text**, before it is parsed: at most [`QUERY_BYTES_MAX`] bytes,
//!    [`TOKENS_MAX`] tokens and [`NESTING_MAX`] levels of `{`, `[` and `(`
//!    — so the recursive parser never sees a document deep enough to
//!    overflow its stack (a list literal nested 2,000 deep used to abort
//!    the process).
//! 2. **The document**, once parsed: at most [`FRAGMENTS_MAX`] fragments,
//!    no fragment cycle, at most [`FIELDS_MAX`] fields once fragments are
//!    expanded (counted with memoisation, so a fan-out of fragments can't
//!    make the count itself expensive), data nested at most [`DEPTH_MAX`]
//!    fields deep and introspection (`__schema`, `__type`) at most
//!    [`INTROSPECTION_DEPTH_MAX`] — enough for graphql-js'
//!    `getIntrospectionQuery()`.
//! 3. **The cost**, computed by the validator with the arguments and
//!    variables: a field costs 1 plus its children, a list field costs its
//!    size (`first`, or its default) times its children ([`list_cost`]),
//!    aliases count each time. At most [`COST_MAX`]; the refusal carries
//!    `extensions.cost` and `extensions.limit`.
//!
//! Every refusal is a request error with `extensions.code`
//! `QUERY_TOO_COMPLEX`, `extensions.measure` (which bound) and
//! `extensions.limit`; nothing runs. Error messages from the parser and
//! the validator are cut to [`MESSAGE_CHARS_MAX`] characters, so an error
//! never echoes a large input back.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Name, Pos, Positioned, Request, Response, ServerError, ServerResult, ValidationResult,
    Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest,
        NextValidation,
    },
    parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet},
};

/// The largest query document, in bytes.
pub const QUERY_BYTES_MAX: usize = 64 * 1024;
/// The most lexical tokens in a document.
pub const TOKENS_MAX: usize = 10_000;
/// The deepest nesting of `{`, `[` and `(` (selection sets, list and
/// object values, arguments) in a document's text.
pub const NESTING_MAX: usize = 32;
/// How deep data fields may nest (the one-round-trip customer query needs
/// 6; fragments don't add levels).
pub const DEPTH_MAX: usize = 12;
/// How deep a `__schema` / `__type` selection may nest (graphql-js'
/// standard introspection query needs 13).
pub const INTROSPECTION_DEPTH_MAX: usize = 16;
/// The most fields a document selects once its fragments are expanded.
pub const FIELDS_MAX: usize = 2_000;
/// The most fragment definitions in a document.
pub const FRAGMENTS_MAX: usize = 100;
/// The most directives on one field, fragment or operation.
pub const DIRECTIVES_MAX: usize = 10;
/// The largest cost a query may have: the number of fields it may return,
/// counted with every list full (see [`list_cost`]). A response holds
/// each field as a value of ~100 bytes while it is built, so this bounds a
/// request's transient memory to tens of megabytes; the README's
/// one-customer dashboard query costs ~11,000, the same for 20 customers
/// in one request ~220,000.
pub const COST_MAX: usize = 250_000;
/// What a list of unknown length is assumed to hold, for its cost (lists
/// that are not paginated: a customer's wallets and subscriptions, an
/// entry's splits, a plan's credits, a delivery's attempts, …).
pub const UNPAGED_LIST_COST: usize = 10;
/// The largest response body; a larger one is replaced by an error coded
/// `RESPONSE_TOO_LARGE` (the cost bound keeps ordinary queries far below).
pub const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Parser and validator messages are cut to this many characters.
pub const MESSAGE_CHARS_MAX: usize = 300;

/// The code of every refusal by a bound on the document.
pub const CODE: &str = "QUERY_TOO_COMPLEX";

/// A list of `first` items (default and maximum as the pagination
/// rules: [`service::pagination::PAGE_SIZE_DEFAULT`],
/// [`service::pagination::PAGE_SIZE_MAX`]) costs `first ×` its children,
/// and at least 1.
pub fn list_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let max = service::pagination::PAGE_SIZE_MAX as i64;
    let default = service::pagination::PAGE_SIZE_DEFAULT as i64;
    let size = first.map_or(default, i64::from).clamp(1, max) as usize;
    1 + size.saturating_mul(child_complexity)
}

/// An unpaginated list's cost: [`UNPAGED_LIST_COST`] × its children.
pub fn unpaged_list_cost(child_complexity: usize) -> usize {
    1 + UNPAGED_LIST_COST.saturating_mul(child_complexity)
}

/// One bound that a document exceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub measure: &'static str,
    /// What was counted, as far as counting went (counting stops at the
    /// first step over the limit for text measures).
    pub value: usize,
    pub limit: usize,
    pub pos: Option<Pos>,
}

impl Exceeded {
    fn new(measure: &'static str, value: usize, limit: usize, pos: Option<Pos>) -> Self {
        Self {
            measure,
            value,
            limit,
            pos,
        }
    }

    pub fn into_server_error(self) -> ServerError {
        let what = match self.measure {
            "bytes" => "the query document is too long",
            "tokens" => "the query document has too many tokens",
            "nesting" => "the query document nests brackets too deep",
            "fragments" => "the query defines too many fragments",
            "fragmentCycle" => "a fragment spreads itself",
            "fields" => "the query selects too many fields",
            "depth" => "the query nests fields too deep",
            "introspectionDepth" => "the introspection query nests too deep",
            "cost" => "the query may return too much",
            _ => "the query is too complex",
        };
        let message = if self.measure == "fragmentCycle" {
            what.to_owned()
        } else {
            format!(
                "{what}: {} {} (at most {})",
                self.measure, self.value, self.limit
            )
        };
        let mut err = ServerError::new(message, self.pos);
        let ext = err.extensions.get_or_insert_with(Default::default);
        ext.set("code", CODE);
        ext.set("measure", self.measure);
        ext.set("limit", self.limit as u64);
        if self.measure == "cost" {
            ext.set("cost", self.value as u64);
        } else if self.measure != "fragmentCycle" {
            ext.set("value", self.value as u64);
        }
        err
    }
}

/// Bounds the document's text before it is parsed: size, token count and
/// bracket nesting. Linear in the text, with no recursion.
pub fn check_text(query: &str) -> Result<(), Exceeded> {
    if query.len() > QUERY_BYTES_MAX {
        return Err(Exceeded::new("bytes", query.len(), QUERY_BYTES_MAX, None));
    }
    let bytes = query.as_bytes();
    let (mut i, mut tokens, mut depth) = (0usize, 0usize, 0usize);
    let (mut line, mut line_start) = (1usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => {
                line += 1;
                line_start = i + 1;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        tokens += 1;
        if tokens > TOKENS_MAX {
            return Err(Exceeded::new("tokens", tokens, TOKENS_MAX, None));
        }
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > NESTING_MAX {
                    let pos = Pos {
                        line,
                        column: query[line_start..i].chars().count() + 1,
                    };
                    return Err(Exceeded::new("nesting", depth, NESTING_MAX, Some(pos)));
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                // Block string: ends at the next unescaped `"""`.
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    if bytes[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                        continue;
                    }
                    if bytes[i] == b'\n' {
                        line += 1;
                        line_start = i + 1;
                    }
                    i += 1;
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                // A name or a number (with its fraction and exponent).
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            _ => {
                // Punctuation or a character the parser will refuse;
                // step over the whole UTF-8 character.
                i += 1;
                while i < bytes.len() && (bytes[i] & 0xC0) == 0x80 {
                    i += 1;
                }
            }
        }
    }
    Ok(())
}

/// What a selection set amounts to once its fragments are expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    fields: usize,
    depth: usize,
    introspection_depth: usize,
}

/// Bounds the parsed document: fragments, cycles, expanded field count,
/// data depth and introspection depth. Each fragment is measured once.
pub fn check_document(doc: &ExecutableDocument) -> Result<(), Exceeded> {
    if doc.fragments.len() > FRAGMENTS_MAX {
        return Err(Exceeded::new(
            "fragments",
            doc.fragments.len(),
            FRAGMENTS_MAX,
            None,
        ));
    }
    let mut walk = Walk {
        doc,
        memo: HashMap::new(),
    };
    let operations: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values().collect(),
    };
    for op in operations {
        // The walk refuses more than FIELDS_MAX fields itself, as it counts.
        let shape = walk.selection_set(&op.node.selection_set.node, false)?;
        if shape.depth > DEPTH_MAX {
            return Err(Exceeded::new("depth", shape.depth, DEPTH_MAX, Some(op.pos)));
        }
        if shape.introspection_depth > INTROSPECTION_DEPTH_MAX {
            return Err(Exceeded::new(
                "introspectionDepth",
                shape.introspection_depth,
                INTROSPECTION_DEPTH_MAX,
                Some(op.pos),
            ));
        }
    }
    Ok(())
}

enum Memo {
    InProgress,
    Done(Shape),
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    memo: HashMap<&'a Name, Memo>,
}

impl<'a> Walk<'a> {
    /// Recursion follows the text's nesting (≤ [`NESTING_MAX`]) and the
    /// chain of fragments (each entered once, ≤ [`FRAGMENTS_MAX`]).
    fn selection_set(
        &mut self,
        set: &'a SelectionSet,
        in_introspection: bool,
    ) -> Result<Shape, Exceeded> {
        let mut out = Shape::default();
        for item in &set.items {
            let inner = match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let introspection = in_introspection || name == "__schema" || name == "__type";
                    let children =
                        self.selection_set(&field.node.selection_set.node, introspection)?;
                    let level = 1 + children.depth.max(children.introspection_depth);
                    Shape {
                        fields: 1 + children.fields,
                        depth: if introspection { 0 } else { 1 + children.depth },
                        introspection_depth: if introspection {
                            level
                        } else {
                            children.introspection_depth
                        },
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node, in_introspection)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(&spread.node.fragment_name, in_introspection)?
                }
            };
            out.fields = out.fields.saturating_add(inner.fields);
            if out.fields > FIELDS_MAX {
                return Err(Exceeded::new(
                    "fields",
                    out.fields,
                    FIELDS_MAX,
                    Some(item.pos),
                ));
            }
            out.depth = out.depth.max(inner.depth);
            out.introspection_depth = out.introspection_depth.max(inner.introspection_depth);
        }
        Ok(out)
    }

    fn fragment(
        &mut self,
        name: &'a Positioned<Name>,
        in_introspection: bool,
    ) -> Result<Shape, Exceeded> {
        let Some(fragment) = self.doc.fragments.get(&name.node) else {
            // Unknown fragments are the validator's to report.
            return Ok(Shape::default());
        };
        match self.memo.get(&name.node) {
            Some(Memo::Done(shape)) => return Ok(Self::seen_from(*shape, in_introspection)),
            Some(Memo::InProgress) => {
                return Err(Exceeded::new("fragmentCycle", 1, 0, Some(name.pos)));
            }
            None => {}
        }
        self.memo.insert(&name.node, Memo::InProgress);
        // Measured as data; reinterpreted below when spread inside
        // introspection.
        let shape = self.selection_set(&fragment.node.selection_set.node, false)?;
        self.memo.insert(&name.node, Memo::Done(shape));
        Ok(Self::seen_from(shape, in_introspection))
    }

    /// A fragment's fields spread inside an introspection field count as
    /// introspection depth.
    fn seen_from(shape: Shape, in_introspection: bool) -> Shape {
        if in_introspection {
            Shape {
                fields: shape.fields,
                depth: 0,
                introspection_depth: shape.depth.max(shape.introspection_depth),
            }
        } else {
            shape
        }
    }
}

/// `message` cut to [`MESSAGE_CHARS_MAX`] characters.
pub fn shorten(message: &mut String) {
    if let Some((cut, _)) = message.char_indices().nth(MESSAGE_CHARS_MAX) {
        message.truncate(cut);
        message.push('…');
    }
}

/// Every error's message [shortened](shorten).
pub fn shorten_all(errors: &mut [ServerError]) {
    for e in errors {
        shorten(&mut e.message);
    }
}

/// The schema extension that applies these bounds to every request. It
/// serves WebSocket operations and the [`CostProbe`]; an HTTP request is
/// checked by its handler ([`check_request`]) and its cost by the schema's
/// own `limit_complexity(COST_MAX)` (see `graphql::execution`).
pub struct RequestLimits;

impl ExtensionFactory for RequestLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestLimits)
    }
}

#[async_trait::async_trait]
impl Extension for RequestLimits {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        check_request(&mut request)?;
        next.run(ctx, request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|mut errors| {
            shorten_all(&mut errors);
            errors
        })?;
        if result.complexity > COST_MAX {
            return Err(vec![
                Exceeded::new("cost", result.complexity, COST_MAX, None).into_server_error(),
            ]);
        }
        Ok(result)
    }
}

/// async-graphql's refusal of a request over a schema's
/// `limit_complexity`: one error, this message, no path — it does not
/// say by how much.
pub fn is_refused_for_cost(response: &Response) -> bool {
    matches!(response.errors.as_slice(), [e] if e.message == "Query is too complex." && e.path.is_empty())
}

/// The last extension of the cost probe schema ([`RequestLimits`] before
/// it): validates a request and never executes it.
pub struct ValidateOnly;

impl ExtensionFactory for ValidateOnly {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ValidateOnly)
    }
}

#[async_trait::async_trait]
impl Extension for ValidateOnly {
    async fn execute(
        &self,
        _ctx: &ExtensionContext<'_>,
        _operation_name: Option<&str>,
        _next: NextExecute<'_>,
    ) -> Response {
        Response::from_errors(vec![ServerError::new(
            "the cost probe validates requests and runs none",
            None,
        )])
    }
}

/// Checks the text (unless the caller parsed it already), parses it and
/// checks the document; the parsed document stays in the request.
pub fn check_request(request: &mut Request) -> ServerResult<()> {
    if !request_is_parsed(request) {
        check_text(&request.query).map_err(Exceeded::into_server_error)?;
    }
    let doc = request.parsed_query().map_err(|mut e| {
        shorten(&mut e.message);
        e
    })?;
    check_document(doc).map_err(Exceeded::into_server_error)
}

/// Marks a request whose document [`parse_checked`] made (async-graphql
/// offers no way to ask whether a request holds a parsed document).
struct Parsed;

fn request_is_parsed(request: &Request) -> bool {
    request.data.contains_key(&std::any::TypeId::of::<Parsed>())
}

/// Parses a query for a transport that must look at the document first
/// (GET requests refuse mutations); the request then skips the parse.
pub fn parse_checked(query: &str) -> ServerResult<ExecutableDocument> {
    check_text(query).map_err(Exceeded::into_server_error)?;
    async_graphql::parser::parse_query(query).map_err(|e| {
        let mut err: ServerError = e.into();
        shorten(&mut err.message);
        err
    })
}

/// A request for a document that [`parse_checked`] returned.
pub fn request_for(query: String, doc: ExecutableDocument, variables: Variables) -> Request {
    let mut request = Request::new(query).variables(variables).data(Parsed);
    request.set_parsed_query(doc);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, n: usize) -> String {
        format!(
            "{{ customers(search: {}1{}) {{ id }} }}",
            open.repeat(n),
            close.repeat(n)
        )
    }

    #[test]
    fn text_bounds() {
        assert_eq!(check_text("{ __typename }"), Ok(()));
        assert_eq!(
            check_text(&nested("[", "]", 40)).unwrap_err().measure,
            "nesting"
        );
        assert_eq!(check_text(&nested("[", "]", 20)), Ok(()));
        // Brackets inside strings, block strings and comments don't nest.
        let quoted = format!(
            "{{ a(s: \"{}\", b: \"\"\"{}\\\"\"\"\"\"\") }} # {}",
            "[".repeat(100),
            "{".repeat(100),
            "(".repeat(100)
        );
        assert_eq!(check_text(&quoted), Ok(()));
        let long = format!("{{ {} }}", "a ".repeat(TOKENS_MAX));
        assert_eq!(check_text(&long).unwrap_err().measure, "tokens");
        let big = format!("{{ a(s: \"{}\") }}", "x".repeat(QUERY_BYTES_MAX));
        assert_eq!(check_text(&big).unwrap_err().measure, "bytes");
        // A position is a real one.
        let err = check_text(&format!("{{\n  a(x: {})\n}}", "[".repeat(40))).unwrap_err();
        // `{` and `(` are two levels; the 31st `[` (column 8 + 30) is the 33rd.
        assert_eq!(
            err.pos,
            Some(Pos {
                line: 2,
                column: 38
            })
        );
        // Numbers, names and spreads are one token each.
        assert_eq!(check_text("{ a(x: -1.5e+10) ...F }"), Ok(()));
    }

    fn doc(q: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(q).unwrap()
    }

    #[test]
    fn document_bounds() {
        let deep = format!("{}{}", "{ a ".repeat(13), "}".repeat(13));
        assert_eq!(check_document(&doc(&deep)).unwrap_err().measure, "depth");
        let ok = format!("{}{}", "{ a ".repeat(12), "}".repeat(12));
        assert_eq!(check_document(&doc(&ok)), Ok(()));
        // Introspection has its own, larger bound.
        let intro = format!("{{ __schema {}{} }}", "{ a ".repeat(15), "}".repeat(15));
        assert_eq!(check_document(&doc(&intro)), Ok(()));
        let cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert_eq!(
            check_document(&doc(cycle)).unwrap_err().measure,
            "fragmentCycle"
        );
        // Fan-out: 30 fragments each spreading the next twice would be
        // 2^30 fields; counting stops at the bound, measuring each
        // fragment once.
        let mut fanout = String::from("{ ...F0 }");
        for i in 0..30 {
            fanout.push_str(&format!(
                " fragment F{i} on Query {{ a: f{i} {{ x }} ...F{} b: g{i} {{ ...F{} }} }}",
                i + 1,
                i + 1
            ));
        }
        fanout.push_str(" fragment F30 on Query { leaf }");
        assert_eq!(check_document(&doc(&fanout)).unwrap_err().measure, "fields");
        let many: String = (0..=FRAGMENTS_MAX)
            .map(|i| format!(" fragment F{i} on Query {{ a }}"))
            .collect();
        assert_eq!(
            check_document(&doc(&format!("{{ a }}{many}")))
                .unwrap_err()
                .measure,
            "fragments"
        );
    }

    #[test]
    fn list_costs() {
        assert_eq!(list_cost(Some(10), 3), 31);
        assert_eq!(
            list_cost(None, 1),
            1 + service::pagination::PAGE_SIZE_DEFAULT as usize
        );
        assert_eq!(list_cost(Some(100_000), 1), 201);
        assert_eq!(list_cost(Some(-5), 1), 2);
        assert_eq!(unpaged_list_cost(2), 21);
    }

    #[test]
    fn messages_are_cut() {
        let mut m = "é".repeat(1000);
        shorten(&mut m);
        assert_eq!(m.chars().count(), MESSAGE_CHARS_MAX + 1);
    }
}
