//! What an HTTP request's operation goes through besides its fields, run
//! by the handler around `Schema::execute`: the document bounded and
//! parsed before ([`limits::check_request`]); the cost bounded by the
//! schema itself (`limit_complexity`, figure from the [cost
//! probe](Schemas::cost_probe) when refused); after, the response in the
//! specification's shape ([`response_shape::finish`]) and the operation
//! named, counted and timed ([`RootFields`]).
//!
//! Why not extensions: once any extension is registered, async-graphql
//! sends every field and list item through its extension chain (a
//! `ResolveInfo` with two registry lookups and one boxed future per
//! extension, for every field), and none of these steps looks at a field.
//! So the HTTP schemas register none of them — the API-key schema none
//! at all, the customer-token one only its per-field fence — and resolve
//! fields on async-graphql's fast path. WebSocket operations, which the
//! socket transport executes itself, run the same steps as extensions
//! (`Schemas::socket`).

use async_graphql::{
    Request, Response, ServerError, Value, Variables, parser::types::ExecutableDocument,
};
use tracing::Span;

use super::{AppSchema, limits, response_shape};
use crate::observe::{Arrived, RootFields};

/// A request's operation, checked and parsed, waiting for its response.
pub struct Prepared {
    doc: ExecutableDocument,
    name: Option<String>,
    /// Kept for the cost probe (a refused request's figure).
    variables: Variables,
    roots: RootFields,
}

/// How a request ended.
pub enum Outcome {
    /// It ran: `data` (possibly null) and field errors, shaped.
    Executed(Response),
    /// It was refused before anything ran: request errors, shortened (the
    /// handler gives them their codes as it does its own refusals').
    Refused(Vec<ServerError>),
}

impl Prepared {
    /// Bounds and parses `request`'s document (which stays in the request
    /// for `execute`), names `span` after its root fields.
    pub fn prepare(request: &mut Request, span: &Span) -> Result<Self, ServerError> {
        limits::check_request(request)?;
        let doc = request.parsed_query()?.clone();
        let roots = RootFields::of(&doc, request.operation_name.as_deref());
        roots.name_span(span);
        Ok(Self {
            doc,
            name: request.operation_name.clone(),
            variables: request.variables.clone(),
            roots,
        })
    }

    /// What `response` (the request's, from an HTTP schema) becomes.
    pub async fn finish(
        self,
        mut response: Response,
        cost_probe: &AppSchema,
        arrived: Arrived,
        types: &response_shape::OutputTypes,
    ) -> Outcome {
        if !executed(&response) {
            if limits::is_refused_for_cost(&response) {
                response = self.probe(cost_probe).await.unwrap_or(response);
            }
            limits::shorten_all(&mut response.errors);
            return Outcome::Refused(response.errors);
        }
        self.roots.record(&response, arrived.elapsed());
        response_shape::finish(&mut response, Some(&self.doc), self.name.as_deref(), types);
        Outcome::Executed(response)
    }

    /// The refusal with its figure: the same document and variables on the
    /// cost probe, whose validation reports the cost. The probe runs
    /// nothing ([`limits::ValidateOnly`]) and its request carries no
    /// principal; `None` if it did not refuse.
    async fn probe(self, cost_probe: &AppSchema) -> Option<Response> {
        let mut request = Request::new(String::new()).variables(self.variables);
        request.operation_name = self.name;
        request.set_parsed_query(self.doc);
        let probed = cost_probe.execute(request).await;
        (!probed.errors.is_empty() && !executed(&probed)).then_some(probed)
    }
}

/// Whether async-graphql executed the request behind `response`. A request
/// it refuses before execution (unparseable, invalid, too costly, no such
/// operation, a subscription over HTTP) comes back as errors alone: no
/// data, and no error with a path. An executed operation's errors come
/// from its fields and carry their paths, and its data is an object
/// unless a non-null root field failed — with an error at that field.
fn executed(response: &Response) -> bool {
    !matches!(response.data, Value::Null)
        || response.errors.is_empty()
        || response.errors.iter().any(|e| !e.path.is_empty())
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn ok(&self) -> i32 {
            1
        }
        async fn fails(&self) -> async_graphql::Result<i32> {
            Err("no".into())
        }
        async fn maybe(&self) -> async_graphql::Result<Option<i32>> {
            Err("no".into())
        }
    }

    async fn run(query: &str) -> Response {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .limit_complexity(3)
            .finish()
            .execute(query)
            .await
    }

    /// The rule [`executed`] relies on, checked against async-graphql.
    #[tokio::test]
    async fn refused_requests_and_executed_operations_are_told_apart() {
        for refused in [
            "{ ok",
            "{ nope }",
            "{ ok a: ok b: ok c: ok }",
            "subscription { ok }",
            "query A { ok } query B { ok }",
        ] {
            let response = run(refused).await;
            assert!(!executed(&response), "{refused}: {response:?}");
        }
        assert!(limits::is_refused_for_cost(
            &run("{ ok a: ok b: ok c: ok }").await
        ));
        assert!(!limits::is_refused_for_cost(&run("{ nope }").await));
        for ran in [
            "{ ok }",
            "{ fails }",
            "{ ok fails }",
            "{ maybe }",
            "{ ok @skip(if: true) }",
        ] {
            let response = run(ran).await;
            assert!(executed(&response), "{ran}: {response:?}");
        }
    }
}
