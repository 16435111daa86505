"""Three canaries with a regression that lives in one place, sent with the
official OpenTelemetry Python SDK over OTLP/HTTP (protobuf):

- py-refund: the canary fails on http.route=/refund only;
- py-exc: the canary's errors raise KeyError, an exception the baseline never raised;
- py-pods: one of the canary's three pods is slow.
"""
import argparse
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode


def provider(endpoint, service, version, pod):
    tp = TracerProvider(resource=Resource.create({
        "service.name": service, "service.version": version, "k8s.pod.name": pod}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), max_export_batch_size=512))
    return tp


def request(tracer, t0, route, ms, error=None):
    """One server span of `ms` milliseconds; `error` an exception to record."""
    span = tracer.start_span(f"GET {route}", kind=SpanKind.SERVER, start_time=t0)
    span.set_attribute("http.route", route)
    span.set_attribute("http.request.method", "GET")
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=t0 + int(ms * 1e6))


def jitter(i, ms):
    return ms * (1.0 + 0.2 * ((i % 7) - 3) / 3.0)


def send(tp, spans):
    tracer = tp.get_tracer("py-explain")
    t0 = time.time_ns() - 60 * 10**9
    for i, (route, ms, error) in enumerate(spans):
        request(tracer, t0 + i * 1000, route, jitter(i, ms), error)
    assert tp.force_flush(30_000)
    tp.shutdown()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    a = p.parse_args()
    ep = a.http + "/v1/traces"

    # py-refund: /refund is a tenth of the traffic; the canary fails half of it.
    for version, pod, refund_err in [("1.0", "refund-b-1", 1), ("1.1", "refund-c-1", 50)]:
        spans = []
        for i in range(1000):
            route = "/refund" if i % 10 == 0 else "/pay"
            fail = (route == "/refund" and (i // 10) < refund_err) or (route == "/pay" and i % 100 == 1)
            spans.append((route, 20.0, RuntimeError("declined") if fail else None))
        send(provider(ep, "py-refund", version, pod), spans)

    # py-exc: the baseline's few errors are timeouts; the canary raises KeyError too.
    base = [("/pay", 20.0, TimeoutError("upstream") if i % 100 == 0 else None) for i in range(800)]
    send(provider(ep, "py-exc", "1.0", "exc-b-1"), base)
    canary = [("/pay", 20.0, TimeoutError("upstream") if i % 100 == 0 else KeyError("cart") if i % 20 == 5 else None)
              for i in range(800)]
    send(provider(ep, "py-exc", "1.1", "exc-c-1"), canary)

    # py-pods: two baseline pods, three canary pods, the second one slow.
    for pod in ["pods-b-1", "pods-b-2"]:
        send(provider(ep, "py-pods", "1.0", pod), [("/pay", 20.0, None)] * 600)
    for pod, ms in [("pods-c-1", 20.0), ("pods-c-2", 35.0), ("pods-c-3", 20.0)]:
        send(provider(ep, "py-pods", "1.1", pod), [("/pay", ms, None)] * 400)
    print("sent")


if __name__ == "__main__":
    main()
