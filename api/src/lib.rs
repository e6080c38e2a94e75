//! The HTTP face of the engine: axum routes and the async-graphql schema.
//! Resolvers are thin: parse, authorize, call one `service` function, map.

pub mod config;
pub mod graphql;
pub mod http;
pub mod observe;
pub mod server;
