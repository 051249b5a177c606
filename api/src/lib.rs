//! The DotMac control plane's API process: configuration, the GraphQL
//! gateway and the `/v1` HTTP routes with per-tenant authorization, the use
//! cases, the relational store, the usage pipeline's ports, and the wiring
//! of the two run modes (`dotmac dev` embedded, `dotmac serve` on Postgres,
//! Redis, Kafka and ClickHouse).
//!
//! Layers, each importing only those below it: transports (`http`,
//! `graphql`) → the composition root (`app`) → use cases (`service`) →
//! ports (`pipeline`, `bus`, `limiter`) and the store (`store`); `wiring`
//! builds an `App` and serves it.

pub mod app;
pub mod auth;
pub mod bus;
pub mod caller;
pub mod config;
pub mod error;
pub mod graphql;
pub mod http;
pub mod limiter;
pub mod outbox;
pub mod pipeline;
pub mod seed;
pub mod service;
pub mod store;
pub mod wiring;
