"""Sends traces, logs and metrics with the official OpenTelemetry Python SDK:
baseline 3.1.0 over OTLP/gRPC, canary 3.2.0 over OTLP/HTTP (protobuf).

With --tls the gRPC exporters use TLS (https endpoints); CA and client
certificates come from the standard OTEL_EXPORTER_OTLP_CERTIFICATE,
OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY."""
import argparse
import logging

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics


def resource(version, role):
    return Resource.create({"service.name": "py-checkout", "service.version": version, "rollout.role": role})


def spans(provider, n):
    tracer = provider.get_tracer("py-e2e")
    for _ in range(n):
        with tracer.start_as_current_span("POST /pay") as span:
            span.set_attribute("http.route", "/pay")
    assert provider.force_flush(10_000)
    provider.shutdown()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grpc", required=True)
    p.add_argument("--http", required=True)
    p.add_argument("--tls", action="store_true")
    a = p.parse_args()
    insecure = not a.tls

    tp = TracerProvider(resource=resource("3.1.0", "stable"))
    tp.add_span_processor(BatchSpanProcessor(GrpcSpans(endpoint=a.grpc, insecure=insecure)))
    spans(tp, 100)

    tp = TracerProvider(resource=resource("3.2.0", "canary"))
    tp.add_span_processor(BatchSpanProcessor(HttpSpans(endpoint=a.http + "/v1/traces")))
    spans(tp, 80)

    lp = LoggerProvider(resource=resource("3.1.0", "stable"))
    lp.add_log_record_processor(BatchLogRecordProcessor(GrpcLogs(endpoint=a.grpc, insecure=insecure)))
    log = logging.getLogger("py-e2e")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=lp))
    for i in range(10):
        log.error("payment %d failed", i)
    lp.force_flush()
    lp.shutdown()

    reader = PeriodicExportingMetricReader(HttpMetrics(endpoint=a.http + "/v1/metrics"), export_interval_millis=60_000)
    mp = MeterProvider(resource=resource("3.2.0", "canary"), metric_readers=[reader])
    mp.get_meter("py-e2e").create_counter("py.orders").add(3)
    mp.force_flush()
    mp.shutdown()
    print("sent")


if __name__ == "__main__":
    main()
