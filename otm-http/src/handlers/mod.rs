//! The router's handlers: the JSON API, the browser pages and their
//! assets, and the operator endpoints. Each decodes a request, calls the
//! [`Service`](crate::Service) and encodes the answer.

pub(crate) mod api;
pub(crate) mod b64;
pub(crate) mod groups;
pub(crate) mod ops;
pub(crate) mod pages;
pub(crate) mod requests;
