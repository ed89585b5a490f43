//! # otm-testkit
//!
//! What the otm workspace's tests share, kept out of every published
//! crate's API (this crate is not published):
//!
//! - [`env`](mod@env): service URLs from the environment and the one skip rule
//!   ([`skip`]: a missing service skips with a printed reason locally and
//!   fails under `CI` or `OTM_REQUIRE_SERVICES`);
//! - [`cleanup`]: guards that remove what a test made in the shared
//!   services when dropped, also when the test panics: a PostgreSQL schema
//!   ([`PgSchema`]) and a Redis key prefix ([`RedisPrefix`]);
//! - [`process`]: free ports, a kill-on-drop [`Process`], private
//!   [`RedisServer`], [`PrivatePostgres`] and [`OtmServer`] processes;
//! - [`server`]: the otm router in-process on a loopback socket with a
//!   request log ([`TestServer`]);
//! - [`tls`]: a test CA and server certificate made with `openssl`
//!   ([`TestCerts`]);
//! - [`webhooks`]: a webhook receiver that checks signatures with its own
//!   HMAC;
//! - [`oneshot`]: one request through a router in process and its answer
//!   read whole ([`oneshot::Reply`]);
//! - [`browser`]: headless Chromium through chromedriver ([`Driver`]) and
//!   the page steps the browser tests share.

pub mod browser;
pub mod cleanup;
pub mod env;
pub mod layers;
pub mod oneshot;
pub mod process;
pub mod server;
pub mod tls;
pub mod webhooks;

pub use browser::Driver;
pub use cleanup::{PgSchema, RedisPrefix};
pub use env::{env_or, services_required, skip, unique_suffix};
pub use process::{free_port, OtmServer, PrivatePostgres, Process, RedisServer};
pub use server::TestServer;
pub use tls::TestCerts;
