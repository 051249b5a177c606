//! The DotMac control plane's API process: configuration, the GraphQL
//! gateway with per-tenant authorization, the store, and the two run modes
//! (`dotmac dev` embedded, `dotmac serve` on Postgres and Redis).

pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod embedded_usage;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod invoice_doc;
pub mod key_cache;
pub mod payment_webhook;
pub mod ratelimit;
pub mod seed;
pub mod server;
pub mod store;
pub mod usage;
