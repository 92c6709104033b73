//! portcullis: an authenticating, authorizing reverse proxy for container registries.
//!
//! The map of the modules, in the order a request meets them:
//!
//! | module | job |
//! |---|---|
//! | [`docker_auth`] | reading a docker_auth `auth_config.yml`'s `ldap_auth:` section as it is |
//! | [`config`] | `proxy.yaml`: schema, defaults, validation with file:line |
//! | [`diagnostic`] | a located load error (file:line:column, key), shared by every loader |
//! | [`route`] | method + `/v2` request target → [`route::Route`] (pure, fuzzed) |
//! | [`client`] | the client address, through trusted proxies (`X-Forwarded-For` walked from the right) |
//! | [`cluster`] | state shared by replicas through Redis (`cluster:`): lockout counters, revocations, rate limits, a message bus; in-process without it |
//! | [`authn`] | one [`authn::Authenticator`] trait; static users, htpasswd; login cache |
//! | [`acl`] | rules, matching (glob, regex, placeholders), loading |
//! | [`acl_tests`] | stated invariants about the ACL, checked by `test`, `check`, start and reload |
//! | [`policy`] | credentials + route + ACL → [`policy::Decision`]: the one place that decides |
//! | [`token`] | the Docker token service: keys, JWT signing/verification, the token endpoint |
//! | [`upstream`] | the registry: TLS to it, its own auth, and the small requests portcullis makes itself |
//! | [`catalog`] | the per-user filtered catalog |
//! | [`cache`] | the manifest cache: hot manifests answered from memory after authorization |
//! | [`errors`] | OCI error bodies and status codes |
//! | [`state`] | everything loaded from files, swapped as one unit |
//! | [`proxy`] | the Pingora `ProxyHttp` phases; calls policy, never decides itself |
//! | [`ui`] | the web UI under `/ui/`: login sessions, repositories and tags, explain |
//! | [`explain`] | scope + account → granted actions and the deciding rule (CLI and UI) |
//! | [`tls`] | the client-side certificate, swappable without a restart |
//! | [`reload`] | watching files and SIGHUP, building a new state, swapping it in |
//! | [`shutdown`] | SIGTERM drains requests in flight before exiting |
//! | [`limits`] | connection cap, header deadline (slowloris), URI and header size limits |
//! | [`server`] | builds the Pingora server: listeners, TLS, threads |
//! | [`outcome`] | how a request ended: the audit line's decision and the metric label |
//! | [`metrics`] | the Prometheus registry and one method per thing counted |
//! | [`audit`] | the per-request audit line, formatted into reused buffers, written off the request path |
//! | [`admin`] | the admin listener (`/metrics`, `/healthz`, `/readyz`) and the registry probe |
//! | [`yaml`] | YAML helpers shared by the loaders (line numbers, error locations) |

// The docs are written for whoever works on portcullis (`cargo doc --document-private-items`):
// a module's map may link to its private parts.
#![allow(rustdoc::private_intra_doc_links)]

pub mod acl;
pub mod acl_tests;
pub mod admin;
pub mod audit;
pub mod authn;
pub mod cache;
pub mod catalog;
pub mod client;
pub mod cluster;
pub mod config;
pub mod diagnostic;
pub mod docker_auth;
pub mod errors;
pub mod explain;
pub mod limits;
pub mod metrics;
pub mod outcome;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tls;
pub mod token;
pub mod ui;
pub mod upstream;
pub mod yaml;
