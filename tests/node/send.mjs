// Sends spans with the official OpenTelemetry JS SDK: baseline 4.1.0 over
// OTLP/gRPC, canary 4.2.0 over OTLP/HTTP protobuf and OTLP/HTTP JSON.
// Usage: node send.mjs <grpc-url> <http-base-url>
import { TracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';

const [grpc, http] = process.argv.slice(2);

async function send(exporter, version, role, n) {
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'js-cart', 'service.version': version, 'rollout.role': role }),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  const tracer = provider.getTracer('node-e2e');
  for (let i = 0; i < n; i++) {
    const span = tracer.startSpan('GET /cart', { attributes: { 'http.route': '/cart', 'http.response.status_code': 200 } });
    span.end();
  }
  await provider.forceFlush();
  await provider.shutdown();
}

await send(new GrpcExporter({ url: grpc }), '4.1.0', 'stable', 60);
await send(new ProtoExporter({ url: `${http}/v1/traces` }), '4.2.0', 'canary', 40);
await send(new JsonExporter({ url: `${http}/v1/traces` }), '4.2.0', 'canary', 20);
console.log('sent');
