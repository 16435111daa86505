//! The benchmark's payload, and its split by service as the Collector's
//! `load_balancing` exporter (`routing_key: service`) would send it.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

/// The service of resource `r`: the standard payload's three services in
/// turn, or with `services`, `service-00`, `service-01`, … each with a
/// baseline and a canary resource (resources 0 and 1, 2 and 3, …).
fn service_of(r: usize, services: Option<usize>) -> String {
    match services {
        None => ["checkout", "cart", "payments"][r % 3].to_string(),
        Some(n) => format!("service-{:02}", (r / 2) % n.max(1)),
    }
}

/// One export request: `resources` resources (alternating baseline and
/// canary versions) with `spans` spans in total, ending about at `end_ns`.
pub fn payload(
    resources: usize,
    spans: usize,
    seed: u64,
    services: Option<usize>,
    end_ns: u64,
) -> ExportTraceServiceRequest {
    let now = end_ns;
    let per = spans / resources.max(1);
    let mut rnd = xorshift(seed);
    let resource_spans = (0..resources)
        .map(|r| {
            let canary = r % 2 == 1;
            // Durations and status codes: the same for a canary resource as
            // for its baseline (r and r + 1), so the two versions are an A/A
            // pair that no judge should fail; ids and addresses differ.
            let mut shape =
                xorshift(seed ^ ((r / 2) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let attrs = vec![
                kv("service.name", s(&service_of(r, services))),
                kv("service.version", s(if canary { "1.5.0" } else { "1.4.0" })),
                kv("deployment.environment.name", s("prod")),
                kv(
                    "k8s.pod.label.role",
                    s(if canary { "canary" } else { "stable" }),
                ),
                kv("k8s.namespace.name", s("shop")),
                kv("k8s.pod.name", s(&format!("checkout-{r}-7d9f8"))),
                kv("host.name", s(&format!("node-{r}"))),
            ];
            let spans = (0..per)
                .map(|i| {
                    let start = now - 1_000_000_000 + (i as u64) * 1000;
                    let dur = 1_000_000 + shape() % 50_000_000;
                    Span {
                        trace_id: rnd()
                            .to_be_bytes()
                            .into_iter()
                            .chain(rnd().to_be_bytes())
                            .collect(),
                        span_id: rnd().to_be_bytes().to_vec(),
                        parent_span_id: if i % 4 == 0 {
                            vec![]
                        } else {
                            rnd().to_be_bytes().to_vec()
                        },
                        name: ["GET /cart", "POST /checkout", "GET /items/{id}"][i % 3].into(),
                        kind: 2,
                        start_time_unix_nano: start,
                        end_time_unix_nano: start + dur,
                        attributes: vec![
                            kv("http.request.method", s("GET")),
                            kv("http.route", s("/cart")),
                            kv(
                                "http.response.status_code",
                                Value::IntValue(if shape().is_multiple_of(100) {
                                    500
                                } else {
                                    200
                                }),
                            ),
                            kv("url.scheme", s("https")),
                            kv("server.address", s("checkout.shop.svc")),
                            kv("server.port", Value::IntValue(8080)),
                            kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64)")),
                            kv("network.protocol.version", s("1.1")),
                            kv(
                                "client.address",
                                s(&format!("10.0.{}.{}", rnd() % 255, rnd() % 255)),
                            ),
                            kv("app.cart.items", Value::IntValue((rnd() % 20) as i64)),
                        ],
                        ..Default::default()
                    }
                })
                .collect();
            ResourceSpans {
                resource: Some(Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// A xorshift generator seeded with `seed`.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// `service.name` of a resource.
pub fn service_name(rs: &ResourceSpans) -> &str {
    rs.resource
        .iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

/// `req` split over `nodes` nodes the way a router by service sends it:
/// every resource of one service to one node. The services, in order of
/// first appearance, are dealt to the nodes in turn (an even split for the
/// benchmark; the Collector hashes instead). Each part, and its services.
pub fn split(
    req: &ExportTraceServiceRequest,
    nodes: usize,
) -> Vec<(ExportTraceServiceRequest, Vec<String>)> {
    let mut parts: Vec<(ExportTraceServiceRequest, Vec<String>)> =
        (0..nodes.max(1)).map(|_| Default::default()).collect();
    let mut seen: Vec<String> = Vec::new();
    for rs in &req.resource_spans {
        let name = service_name(rs).to_string();
        let i = match seen.iter().position(|s| *s == name) {
            Some(i) => i,
            None => {
                seen.push(name.clone());
                seen.len() - 1
            }
        };
        let n = parts.len();
        let part = &mut parts[i % n];
        if !part.1.contains(&name) {
            part.1.push(name);
        }
        part.0.resource_spans.push(rs.clone());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(req: &ExportTraceServiceRequest) -> usize {
        req.resource_spans
            .iter()
            .map(|r| r.scope_spans[0].spans.len())
            .sum()
    }

    #[test]
    fn a_split_keeps_every_span_and_each_service_whole_on_one_node() {
        let req = payload(16, 512, 7, Some(8), 1_700_000_000_000_000_000);
        let parts = split(&req, 2);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts.iter().map(|p| spans(&p.0)).sum::<usize>(), 512);
        for (i, (part, services)) in parts.iter().enumerate() {
            assert_eq!(services.len(), 4, "node {i}: {services:?}");
            assert_eq!(spans(part), 256);
            for rs in &part.resource_spans {
                assert!(services.iter().any(|s| s == service_name(rs)));
            }
        }
        // Both versions of each service travel together.
        let versions = |p: &ExportTraceServiceRequest, svc: &str| {
            p.resource_spans
                .iter()
                .filter(|r| service_name(r) == svc)
                .count()
        };
        assert_eq!(versions(&parts[0].0, "service-00"), 2);
        // The two versions of a service are an A/A pair: same durations.
        let durations = |rs: &ResourceSpans| -> Vec<u64> {
            rs.scope_spans[0]
                .spans
                .iter()
                .map(|s| s.end_time_unix_nano - s.start_time_unix_nano)
                .collect()
        };
        let (base, canary) = (&req.resource_spans[0], &req.resource_spans[1]);
        assert_eq!(durations(base), durations(canary));
        assert_ne!(durations(base), durations(&req.resource_spans[2]));
        assert_ne!(
            base.scope_spans[0].spans[0].span_id,
            canary.scope_spans[0].spans[0].span_id
        );
        assert_eq!(versions(&parts[1].0, "service-01"), 2);
        // The standard payload is unchanged: three named services.
        let std = payload(4, 512, 7, None, 1_700_000_000_000_000_000);
        let names: Vec<_> = std.resource_spans.iter().map(service_name).collect();
        assert_eq!(names, ["checkout", "cart", "payments", "checkout"]);
        assert_eq!(split(&std, 1)[0].0, std);
    }

    /// The benchmark's payload in memory: what the hot store reserves per
    /// span (Arrow buffers with their capacity). One request's batches:
    /// 413–438 bytes before the converters copied loose buffers to their
    /// length, 326–353 after, 298 since span ids are held as bytes, 243 since
    /// resource attributes are held once per resource (2026-12-07). Merged as
    /// the hot store merges small batches (32 requests, each with its own
    /// random values; a batch per service): 113 with dictionary keys and
    /// small integers narrowed, 91 with attributes as a column per key, 87
    /// with durations in 4 bytes.
    #[test]
    fn the_bench_payload_holds_at_most_260_bytes_per_span_in_memory_and_95_merged() {
        use graylens_collector::attribution::Attributor;
        use graylens_collector::convert::{merge, spans_from_protobuf, Ctx};
        use graylens_collector::{AttributionConfig, LimitsConfig};
        use prost::Message;

        let now = 1_700_000_000_000_000_000;
        let attributor = Attributor::new(AttributionConfig::default());
        let limits = LimitsConfig::default();
        let ctx = Ctx {
            attributor: &attributor,
            limits: &limits,
            received_ns: now as i64,
        };
        let requests: Vec<_> = (0..32)
            .map(|seed| {
                let buf = payload(4, 512, 7 + seed, None, now).encode_to_vec();
                spans_from_protobuf(&buf, &ctx).unwrap()
            })
            .collect();
        let c = &requests[0];
        assert_eq!(c.rows(), 512);
        let per_span = c.memory_bytes() / c.rows();
        assert!(per_span <= 260, "{per_span} bytes per span");
        // The same services in the same order in every request.
        let (mut rows, mut bytes) = (0, 0);
        for service in 0..c.batches.len() {
            let parts: Vec<_> = requests.iter().map(|r| &r.batches[service]).collect();
            let merged = merge(&parts[0].schema(), &parts).unwrap();
            rows += merged.num_rows();
            bytes += merged.get_array_memory_size();
        }
        assert_eq!(rows, 32 * 512);
        assert!(bytes / rows <= 95, "{} bytes per span merged", bytes / rows);
    }
}
