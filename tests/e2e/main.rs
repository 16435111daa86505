//! End-to-end tests: the real `graylens` binary on 127.0.0.1 with port 0,
//! fed by real OTLP clients; every count is checked through SQL.

mod alerts;
mod auth;
mod browser;
mod cluster;
mod collector;
mod compare;
mod dashboard;
mod dashboard_auth;
mod demo;
mod deploy;
mod durability;
mod flagger;
mod gotools;
mod harness;
mod http_inputs;
mod kitex;
mod loadbalancing;
mod node_sdk;
mod python_sdk;
mod reaction;
mod receiver;
mod restart;
mod rust_sdk;
mod tls;
mod traffic;
