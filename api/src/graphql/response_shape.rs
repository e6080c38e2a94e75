//! Puts an executed response in the shape the GraphQL specification
//! requires, which async-graphql 7.2 does not produce on its own:
//!
//! - **Keys in query order.** async-graphql inserts fields as their
//!   resolvers finish (and groups merged objects), so `{ b a }` may come
//!   back as `{ "a", "b" }`.
//! - **A field error nulls the field**, and a null in a non-null position
//!   nulls the nearest nullable parent ("null propagation"). async-graphql
//!   drops the key instead (and an object whose every field failed becomes
//!   `null` whatever its type says).
//!
//! The walk follows the executed operation's selection sets (fragments
//! expanded, same response keys merged) with the output types read once
//! from the SDL. A key absent from the data with no error at or under its
//! path was skipped (`@skip`/`@include`) and stays absent. The schema has
//! no interfaces or unions, so every fragment that passed validation
//! applies to the object it is spread in. Introspection results
//! (`__schema`, `__type`) are left as they are.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Name, PathSegment, Positioned, Request, Response, ServerResult, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest},
    indexmap::IndexMap,
    parser::types::{
        BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
        Selection, SelectionSet, Type, TypeKind,
    },
};

/// Object type → field → output type, from the SDL.
pub struct OutputTypes {
    objects: HashMap<String, HashMap<String, Type>>,
}

impl OutputTypes {
    pub fn from_sdl(sdl: &str) -> Self {
        let mut objects = HashMap::new();
        if let Ok(doc) = async_graphql::parser::parse_schema(sdl) {
            for def in doc.definitions {
                if let async_graphql::parser::types::TypeSystemDefinition::Type(ty) = def
                    && let TypeKind::Object(object) = &ty.node.kind
                {
                    let fields = object
                        .fields
                        .iter()
                        .map(|f| (f.node.name.node.to_string(), f.node.ty.node.clone()))
                        .collect();
                    objects.insert(ty.node.name.node.to_string(), fields);
                }
            }
        }
        Self { objects }
    }

    fn field(&self, object: &str, field: &str) -> Option<&Type> {
        self.objects.get(object)?.get(field)
    }

    fn is_object(&self, name: &str) -> bool {
        self.objects.contains_key(name)
    }
}

/// What every executed response gets: messages shortened, request-level
/// codes on errors without one, and `data` in the specification's shape
/// (given the request's document).
pub fn finish(
    response: &mut Response,
    doc: Option<&ExecutableDocument>,
    operation_name: Option<&str>,
    types: &OutputTypes,
) {
    super::limits::shorten_all(&mut response.errors);
    super::error::annotate_request_errors(response);
    if let Some(doc) = doc {
        shape(response, doc, operation_name, types);
    }
}

/// The schema extension that reshapes every executed response
/// ([`finish`]), for WebSocket operations; over HTTP the handler calls
/// [`finish`] itself (see `graphql::execution`).
pub struct SpecResponse {
    types: Arc<OutputTypes>,
}

impl SpecResponse {
    pub fn new(types: Arc<OutputTypes>) -> Self {
        Self { types }
    }
}

impl ExtensionFactory for SpecResponse {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(SpecResponseRun {
            types: self.types.clone(),
            doc: Mutex::new(None),
        })
    }
}

struct SpecResponseRun {
    types: Arc<OutputTypes>,
    doc: Mutex<Option<ExecutableDocument>>,
}

#[async_trait::async_trait]
impl Extension for SpecResponseRun {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // The limits extension before this one has parsed and bounded it.
        let doc = request.parsed_query()?.clone();
        if let Ok(mut slot) = self.doc.lock() {
            *slot = Some(doc);
        }
        next.run(ctx, request).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        let doc = self.doc.lock().ok().and_then(|mut slot| slot.take());
        finish(&mut response, doc.as_ref(), operation_name, &self.types);
        response
    }
}

/// Reshapes `response.data` for the operation `operation_name` of `doc`.
pub fn shape(
    response: &mut Response,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    types: &OutputTypes,
) {
    let Some(op) = selected_operation(doc, operation_name) else {
        return;
    };
    let root = match op.node.ty {
        OperationType::Query => "Query",
        OperationType::Mutation => "Mutation",
        OperationType::Subscription => "SubscriptionRoot",
    };
    let walk = Walk {
        doc,
        types,
        error_paths: response.errors.iter().map(|e| e.path.as_slice()).collect(),
    };
    let root_type = Type {
        base: BaseType::Named(Name::new(root)),
        nullable: true,
    };
    let sets = [&op.node.selection_set.node];
    if response.errors.is_empty() {
        // Nothing failed, so nothing is null where it must not be: only
        // the keys' order can be off (the common case, done in place).
        walk.order(&mut response.data, &root_type, &sets);
        return;
    }
    let data = std::mem::take(&mut response.data);
    let mut path = Vec::new();
    let shaped = walk
        .complete(data, &root_type, &sets, &mut path)
        .unwrap_or(Value::Null);
    response.data = shaped;
}

/// The operation a request with `name` runs: the named one, or the only
/// one. `None` when the name matches nothing or several need a name.
pub fn selected_operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// An object's selected fields in query order: (response key, field
/// name, the field's selection sets).
type Fields<'s> = Vec<(&'s Name, &'s Name, Vec<&'s SelectionSet>)>;

/// A null reached a non-null position: the parent must become null.
struct Propagate;

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    types: &'a OutputTypes,
    error_paths: Vec<&'a [PathSegment]>,
}

impl Walk<'_> {
    fn has_error_under(&self, path: &[PathSegment]) -> bool {
        self.error_paths.iter().any(|p| p.starts_with(path))
    }

    fn null_for(ty: &Type) -> Result<Value, Propagate> {
        if ty.nullable {
            Ok(Value::Null)
        } else {
            Err(Propagate)
        }
    }

    fn complete(
        &self,
        value: Value,
        ty: &Type,
        sets: &[&SelectionSet],
        path: &mut Vec<PathSegment>,
    ) -> Result<Value, Propagate> {
        match (&ty.base, value) {
            (_, Value::Null) => {
                // async-graphql answers null for an object whose every
                // field failed: complete it as an empty object.
                if let BaseType::Named(name) = &ty.base
                    && self.types.is_object(name)
                    && !sets.is_empty()
                    && !path.is_empty()
                    && self.has_error_under(path)
                {
                    return self.object(IndexMap::new(), name, ty, sets, path);
                }
                Self::null_for(ty)
            }
            (BaseType::List(item_ty), Value::List(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    path.push(PathSegment::Index(i));
                    let done = self.complete(item, item_ty, sets, path);
                    path.pop();
                    match done {
                        Ok(v) => out.push(v),
                        Err(Propagate) => return Self::null_for(ty),
                    }
                }
                Ok(Value::List(out))
            }
            (BaseType::Named(name), Value::Object(map)) if self.types.is_object(name) => {
                self.object(map, name, ty, sets, path)
            }
            (_, other) => Ok(other),
        }
    }

    fn object(
        &self,
        mut map: IndexMap<Name, Value>,
        type_name: &str,
        ty: &Type,
        sets: &[&SelectionSet],
        path: &mut Vec<PathSegment>,
    ) -> Result<Value, Propagate> {
        let fields = self.fields_of(sets);
        let mut out = IndexMap::with_capacity(fields.len());
        for (key, field_name, child_sets) in fields {
            path.push(PathSegment::Field(key.to_string()));
            let field_ty = self.types.field(type_name, field_name);
            let done = match (map.shift_remove(key), field_ty) {
                // A field the types don't know (`__typename`, `__schema`,
                // `__type`): as it came.
                (Some(v), None) => Some(Ok(v)),
                (None, None) => None,
                (Some(v), Some(fty)) => Some(self.complete(v, fty, &child_sets, path)),
                (None, Some(fty)) => self.has_error_under(path).then(|| Self::null_for(fty)),
            };
            path.pop();
            match done {
                Some(Ok(v)) => {
                    out.insert(key.clone(), v);
                }
                Some(Err(Propagate)) => return Self::null_for(ty),
                None => {}
            }
        }
        // Anything the selection didn't name (nothing, normally) keeps
        // its place after the rest.
        out.extend(map);
        Ok(Value::Object(out))
    }

    /// [`Walk::complete`] for a response without errors: every object's
    /// keys put in query order, in place. An object already in order (as
    /// async-graphql usually answers) is only read; a list's items share
    /// their fields, collected once.
    fn order(&self, value: &mut Value, ty: &Type, sets: &[&SelectionSet]) {
        match (&ty.base, value) {
            (BaseType::List(item_ty), Value::List(items)) => {
                let BaseType::Named(name) = &item_ty.base else {
                    for item in items {
                        self.order(item, item_ty, sets);
                    }
                    return;
                };
                if !self.types.is_object(name) {
                    return;
                }
                let fields = self.fields_of(sets);
                for item in items {
                    if let Value::Object(map) = item {
                        self.order_object(map, name, &fields);
                    }
                }
            }
            (BaseType::Named(name), Value::Object(map)) if self.types.is_object(name) => {
                let fields = self.fields_of(sets);
                self.order_object(map, name, &fields);
            }
            _ => {}
        }
    }

    fn order_object(&self, map: &mut IndexMap<Name, Value>, type_name: &str, fields: &Fields<'_>) {
        // In order when the map's keys appear among the fields in the same
        // sequence (a skipped field is simply absent).
        let mut at = 0;
        let in_order =
            map.keys().all(
                |key| match fields[at..].iter().position(|(k, _, _)| *k == key) {
                    Some(i) => {
                        at += i + 1;
                        true
                    }
                    None => false,
                },
            );
        if !in_order {
            let mut old = std::mem::take(map);
            for (key, _, _) in fields {
                if let Some(v) = old.shift_remove(*key) {
                    map.insert((*key).clone(), v);
                }
            }
            // Anything the selection didn't name keeps its place after.
            map.extend(old);
        }
        for (key, value) in map.iter_mut() {
            let Some((_, field_name, child_sets)) = fields.iter().find(|(k, _, _)| *k == key)
            else {
                continue;
            };
            if let Some(field_ty) = self.types.field(type_name, field_name) {
                self.order(value, field_ty, child_sets);
            }
        }
    }

    fn fields_of<'s>(&'s self, sets: &[&'s SelectionSet]) -> Fields<'s> {
        let mut fields = Vec::new();
        for set in sets {
            self.collect(set, &mut fields, 0);
        }
        fields
    }

    /// The fields of `set` in order, fragments expanded, same keys merged.
    /// Recursion is bounded by the document limits (fragments ≤ 100, no
    /// cycles: see `limits`); `depth` guards it regardless.
    fn collect<'s>(
        &'s self,
        set: &'s SelectionSet,
        fields: &mut Vec<(&'s Name, &'s Name, Vec<&'s SelectionSet>)>,
        depth: usize,
    ) {
        if depth > super::limits::FRAGMENTS_MAX {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let key = &f.node.response_key().node;
                    let child = &f.node.selection_set.node;
                    match fields.iter_mut().find(|(k, _, _)| *k == key) {
                        Some((_, _, sets)) => sets.push(child),
                        None => fields.push((key, &f.node.name.node, vec![child])),
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.collect(&inline.node.selection_set.node, fields, depth + 1)
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.doc.fragments.get(&spread.node.fragment_name.node)
                    {
                        self.collect(&fragment.node.selection_set.node, fields, depth + 1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::ServerError;

    const SDL: &str = r#"
        type Query { customer: Customer viewer: Viewer! list: [Item!] }
        type Customer { name: String! children: Conn! parent: Customer tags: [String!]! }
        type Conn { total: Int! }
        type Viewer { role: String! }
        type Item { id: String! v: Int! }
    "#;

    #[test]
    fn sdl_is_read() {
        let t = OutputTypes::from_sdl(SDL);
        assert!(
            t.is_object("Query"),
            "{:?}",
            async_graphql::parser::parse_schema(SDL).err()
        );
    }

    fn run(query: &str, data: serde_json::Value, error_paths: &[&[&str]]) -> serde_json::Value {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        let mut response = Response::new(Value::from_json(data).unwrap());
        for p in error_paths {
            let mut e = ServerError::new("boom", None);
            e.path = p
                .iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(i) => PathSegment::Index(i),
                    Err(_) => PathSegment::Field((*s).to_owned()),
                })
                .collect();
            response.errors.push(e);
        }
        shape(&mut response, &doc, None, &OutputTypes::from_sdl(SDL));
        // Through a string: serde_json's own maps would sort the keys.
        let text = serde_json::to_string(&response.data).unwrap();
        KEY_ORDER.with(|k| *k.borrow_mut() = text);
        response.data.into_json().unwrap()
    }

    thread_local! {
        static KEY_ORDER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }

    #[test]
    fn keys_follow_the_query() {
        let out = run(
            "{ z: viewer { role } customer { name ...F } a: viewer { role } } fragment F on Customer { tags }",
            serde_json::json!({"a": {"role": "R"}, "customer": {"tags": [], "name": "n"}, "z": {"role": "R"}}),
            &[],
        );
        assert_eq!(out["customer"]["name"], "n");
        assert_eq!(
            KEY_ORDER.with(|k| k.borrow().clone()),
            r#"{"z":{"role":"R"},"customer":{"name":"n","tags":[]},"a":{"role":"R"}}"#
        );
    }

    /// Without errors (the in-place path): every item of a list in query
    /// order, whether it came in order or not, and a key the selection
    /// didn't name kept after the rest.
    #[test]
    fn list_items_follow_the_query_without_errors() {
        run(
            "{ list { v id } customer { name } }",
            serde_json::json!({
                "customer": {"name": "n", "extra": 1},
                "list": [{"id": "a", "v": 1}, {"v": 2, "id": "b"}, {"id": "c", "v": 3}]
            }),
            &[],
        );
        assert_eq!(
            KEY_ORDER.with(|k| k.borrow().clone()),
            r#"{"list":[{"v":1,"id":"a"},{"v":2,"id":"b"},{"v":3,"id":"c"}],"customer":{"name":"n","extra":1}}"#
        );
    }

    #[test]
    fn errors_null_the_field_and_propagate() {
        // A nullable field that failed: null.
        let out = run(
            "{ customer { name parent { name } } }",
            serde_json::json!({"customer": {"name": "n"}}),
            &[&["customer", "parent"]],
        );
        assert_eq!(
            out,
            serde_json::json!({"customer": {"name": "n", "parent": null}})
        );
        // A non-null field that failed nulls its nullable parent.
        let out = run(
            "{ customer { name children { total } } viewer { role } }",
            serde_json::json!({"customer": {"name": "n"}, "viewer": {"role": "R"}}),
            &[&["customer", "children"]],
        );
        assert_eq!(
            out,
            serde_json::json!({"customer": null, "viewer": {"role": "R"}})
        );
        // Up to the root when every position above is non-null.
        let out = run(
            "{ viewer { role } customer { name } }",
            serde_json::json!({"customer": {"name": "n"}}),
            &[&["viewer", "role"]],
        );
        assert_eq!(out, serde_json::Value::Null);
        // An item of [Item!] that failed nulls the list.
        let out = run(
            "{ list { id v } }",
            serde_json::json!({"list": [{"id": "a", "v": 1}, {"id": "b"}]}),
            &[&["list", "1", "v"]],
        );
        assert_eq!(out, serde_json::json!({"list": null}));
        // Skipped fields stay absent.
        let out = run(
            "{ customer { name @skip(if: true) tags } }",
            serde_json::json!({"customer": {"tags": ["x"]}}),
            &[],
        );
        assert_eq!(out, serde_json::json!({"customer": {"tags": ["x"]}}));
    }
}
