//! The role table (README "The API's conventions"), one check per mutation
//! per role: every mutation of the schema is sent by a READ key, a WRITE
//! key, an ADMIN key and a customer token, with arguments made from the
//! schema itself (so a new mutation without a row here fails the test).
//! Below the mutation's role the answer is `FORBIDDEN`; at or above it,
//! anything else (the made-up arguments usually end in `VALIDATION` or
//! `NOT_FOUND`).

mod common;

use std::collections::HashMap;

use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use common::TestApp;
use serde_json::json;
use service::api_keys::Role;

/// The least role each mutation needs.
const ROLE_TABLE: &[(&str, Role)] = &[
    ("adjustBalance", Role::Admin),
    ("allocateCredits", Role::Write),
    ("applyCreditsToInvoice", Role::Write),
    ("archivePlan", Role::Admin),
    ("attachCreditSystem", Role::Admin),
    ("cancelSubscription", Role::Admin),
    ("captureHold", Role::Write),
    ("configureWallet", Role::Admin),
    ("confirmTopUpPayment", Role::Admin),
    ("consumeCredits", Role::Write),
    ("createApiKey", Role::Admin),
    ("createCreditSystem", Role::Admin),
    ("createCustomer", Role::Write),
    ("createCustomerToken", Role::Write),
    ("createFeature", Role::Admin),
    ("createHold", Role::Write),
    ("createPlan", Role::Admin),
    ("createProduct", Role::Admin),
    ("createWebhookEndpoint", Role::Admin),
    ("deleteWebhookEndpoint", Role::Admin),
    ("detachCreditSystem", Role::Admin),
    ("duplicatePlan", Role::Admin),
    ("failTopUpPayment", Role::Admin),
    ("finalizeInvoice", Role::Write),
    ("grantCredits", Role::Admin),
    ("publishPlan", Role::Admin),
    ("purchaseCredits", Role::Write),
    ("redeliverWebhook", Role::Admin),
    ("refundTopUpOrder", Role::Admin),
    ("refundUsage", Role::Write),
    ("releaseHold", Role::Write),
    ("removeEntitlement", Role::Admin),
    ("revokeApiKey", Role::Admin),
    ("rotateCustomerTokenSecret", Role::Admin),
    ("rotateWebhookSecret", Role::Admin),
    ("setAdminEmail", Role::Admin),
    ("setPaymentProvider", Role::Admin),
    ("setEntitlement", Role::Admin),
    ("setTimeZone", Role::Admin),
    ("setUsageThresholds", Role::Admin),
    ("subscribe", Role::Admin),
    ("trackUsage", Role::Write),
    ("updateCreditSystem", Role::Admin),
    ("updateCustomer", Role::Write),
    ("updatePlan", Role::Admin),
    ("updatePlanCredit", Role::Admin),
    ("updateWebhookEndpoint", Role::Admin),
    ("voidGrant", Role::Admin),
    ("voidInvoice", Role::Write),
];

/// A field or argument: name, type, whether it has a default.
type Arg = (String, Type, bool);
/// A mutation: name, arguments, return type.
type Mutation = (String, Vec<Arg>, Type);

/// What the schema says about its types, for making argument values.
struct Types {
    inputs: HashMap<String, Vec<Arg>>,
    /// `@oneOf` inputs: exactly one field is set.
    one_of: Vec<String>,
    enums: HashMap<String, String>,
    objects: Vec<String>,
}

impl Types {
    fn read(sdl: &str) -> (Self, Vec<Mutation>) {
        let doc = async_graphql::parser::parse_schema(sdl).unwrap();
        let mut types = Types {
            inputs: HashMap::new(),
            one_of: Vec::new(),
            enums: HashMap::new(),
            objects: Vec::new(),
        };
        let mut mutations = Vec::new();
        for def in doc.definitions {
            let TypeSystemDefinition::Type(ty) = def else {
                continue;
            };
            let name = ty.node.name.node.to_string();
            match &ty.node.kind {
                TypeKind::InputObject(input) => {
                    if ty
                        .node
                        .directives
                        .iter()
                        .any(|d| d.node.name.node == "oneOf")
                    {
                        types.one_of.push(name.clone());
                    }
                    let fields = input
                        .fields
                        .iter()
                        .map(|f| {
                            let n = &f.node;
                            (
                                n.name.node.to_string(),
                                n.ty.node.clone(),
                                n.default_value.is_some(),
                            )
                        })
                        .collect();
                    types.inputs.insert(name, fields);
                }
                TypeKind::Enum(e) => {
                    types
                        .enums
                        .insert(name, e.values[0].node.value.node.to_string());
                }
                TypeKind::Object(object) => {
                    if name == "Mutation" {
                        for f in &object.fields {
                            let args = f
                                .node
                                .arguments
                                .iter()
                                .map(|a| {
                                    let a = &a.node;
                                    (
                                        a.name.node.to_string(),
                                        a.ty.node.clone(),
                                        a.default_value.is_some(),
                                    )
                                })
                                .collect();
                            mutations.push((
                                f.node.name.node.to_string(),
                                args,
                                f.node.ty.node.clone(),
                            ));
                        }
                    }
                    types.objects.push(name);
                }
                _ => {}
            }
        }
        (types, mutations)
    }

    /// A literal of type `ty` that parses (required fields only).
    fn literal(&self, ty: &Type) -> String {
        match &ty.base {
            BaseType::List(item) => format!("[{}]", self.literal(item)),
            BaseType::Named(name) => match name.as_str() {
                "String" | "ID" => "\"x\"".into(),
                "Credits" | "Decimal" => "\"1\"".into(),
                "Int" => "1".into(),
                "Float" => "1.0".into(),
                "Boolean" => "false".into(),
                "DateTime" => "\"2030-01-01T00:00:00Z\"".into(),
                "JSON" => "{}".into(),
                other => {
                    if let Some(value) = self.enums.get(other) {
                        return value.clone();
                    }
                    let fields = self
                        .inputs
                        .get(other)
                        .unwrap_or_else(|| panic!("type {other}"));
                    if self.one_of.iter().any(|o| o == other) {
                        let (n, t, _) = &fields[0];
                        let t = Type {
                            base: t.base.clone(),
                            nullable: false,
                        };
                        return format!("{{{n}: {}}}", self.literal(&t));
                    }
                    let required: Vec<String> = fields
                        .iter()
                        .filter(|(_, t, has_default)| !t.nullable && !has_default)
                        .map(|(n, t, _)| format!("{n}: {}", self.literal(t)))
                        .collect();
                    format!("{{{}}}", required.join(", "))
                }
            },
        }
    }

    fn selection(&self, ty: &Type) -> &'static str {
        let mut base = &ty.base;
        while let BaseType::List(item) = base {
            base = &item.base;
        }
        match base {
            BaseType::Named(n) if self.objects.iter().any(|o| o == n.as_str()) => " { __typename }",
            _ => "",
        }
    }
}

#[tokio::test]
async fn every_mutation_answers_forbidden_below_its_role_and_only_there() {
    let app = TestApp::spawn().await;
    let (types, mutations) = Types::read(include_str!("../../schema.graphql"));
    let table: HashMap<&str, Role> = ROLE_TABLE.iter().copied().collect();
    let mut listed: Vec<&str> = mutations.iter().map(|(n, _, _)| n.as_str()).collect();
    listed.sort_unstable();
    let mut in_table: Vec<&str> = table.keys().copied().collect();
    in_table.sort_unstable();
    assert_eq!(
        listed, in_table,
        "every mutation has a row in the role table"
    );

    app.ok(
        &app.admin_key,
        r#"mutation { createCustomer(input: {externalId: "c", name: "C"}) { customer { id } } }"#,
        json!({}),
    )
    .await;
    let keys = [
        (Role::Read, app.key(Role::Read).await),
        (Role::Write, app.key(Role::Write).await),
        (Role::Admin, app.key(Role::Admin).await),
    ];
    let rank = |r: Role| match r {
        Role::Read => 0,
        Role::Write => 1,
        Role::Admin => 2,
    };
    for (name, args, ret) in &mutations {
        let args: Vec<String> = args
            .iter()
            .filter(|(_, t, has_default)| !t.nullable && !has_default)
            .map(|(n, t, _)| format!("{n}: {}", types.literal(t)))
            .collect();
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({})", args.join(", "))
        };
        let query = format!("mutation {{ {name}{args}{} }}", types.selection(ret));
        let needed = table[name.as_str()];
        for (role, key) in &keys {
            let (_, body) = app.gql(Some(key), &query, json!({})).await;
            let code = body["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("");
            if rank(*role) < rank(needed) {
                assert_eq!(code, "FORBIDDEN", "{name} as {role:?}: {body}");
            } else {
                assert_ne!(code, "FORBIDDEN", "{name} as {role:?}: {body}");
                assert!(
                    !code.is_empty() || body["errors"].is_null(),
                    "{name}: {body}"
                );
            }
        }
        // A customer token may run no mutation at all (a fresh one: an
        // ADMIN key above may have rotated the signing secret).
        let token = app
            .ok(
                &app.admin_key,
                r#"mutation { createCustomerToken(customer: {externalId: "c"}, ttlSeconds: 600) { token } }"#,
                json!({}),
            )
            .await["createCustomerToken"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, body) = app.gql(Some(&token), &query, json!({})).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{name} as a customer token: {body}"
        );
    }
}
