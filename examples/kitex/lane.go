package main

// Full-link gray release: the lane ("color") of a request travels as
// OpenTelemetry baggage, which obs-opentelemetry carries in Kitex metainfo
// (TTHeader) across every hop. Each service records it on its spans as
// traffic.lane, the attribute graylens reads, and routes colored calls to the
// gray instances of the services it calls.

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// laneKey is both the baggage member and the span attribute.
const laneKey = "traffic.lane"

// withLane colors ctx: every call made with it, and every hop after, is in lane.
func withLane(ctx context.Context, lane string) context.Context {
	m, err := baggage.NewMember(laneKey, lane)
	if err != nil {
		panic(err)
	}
	b, err := baggage.FromContext(ctx).SetMember(m)
	if err != nil {
		panic(err)
	}
	return baggage.ContextWithBaggage(ctx, b)
}

// laneOf is the lane of ctx, "" when uncolored.
func laneOf(ctx context.Context) string {
	return baggage.FromContext(ctx).Member(laneKey).Value()
}

// laneRecorder puts the lane of the parent context on every span started in it:
// the root span, Kitex's client spans and its server spans (whose context holds
// the baggage extracted from the caller's metainfo).
type laneRecorder struct{}

func (laneRecorder) OnStart(parent context.Context, s sdktrace.ReadWriteSpan) {
	if lane := laneOf(parent); lane != "" {
		s.SetAttributes(attribute.String(laneKey, lane))
	}
}
func (laneRecorder) OnEnd(sdktrace.ReadOnlySpan)      {}
func (laneRecorder) Shutdown(context.Context) error   { return nil }
func (laneRecorder) ForceFlush(context.Context) error { return nil }

// recordLanes adds laneRecorder to the global tracer provider that
// obs-opentelemetry's provider installed.
func recordLanes() {
	if tp, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		tp.RegisterSpanProcessor(laneRecorder{})
	} else {
		panic("the OpenTelemetry provider is not the SDK's")
	}
}

// byLane picks the client of the lane of ctx: the gray one for colored
// requests, the baseline one otherwise (what a lane-aware router or service
// mesh does in production).
func byLane[C any](ctx context.Context, baseline, gray C, hasGray bool) C {
	if hasGray && laneOf(ctx) != "" {
		return gray
	}
	return baseline
}
