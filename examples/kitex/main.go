// The Kitex full-link gray release example: a frontend calling inventory and
// cart (which calls inventory too); inventory has a baseline and a gray
// version, and the gray one is slower on Stock. The frontend colors a share
// of its requests; colored requests reach the gray inventory on every hop.
// Every service exports its spans to graylens over OTLP/gRPC.
//
//	shop -role inventory -version 1.4.0 -listen 127.0.0.1:9001    (prints "... listening on ADDR")
//	shop -role inventory -version 1.5.0-gray -listen 127.0.0.1:9002 -stock-delay 12ms
//	shop -role cart -version 2.1.0 -listen 127.0.0.1:9003 -inventory 127.0.0.1:9001 -gray-inventory 127.0.0.1:9002
//	shop -role frontend -version 3.0.0 -inventory ... -gray-inventory ... -cart 127.0.0.1:9003 -requests 3000 -gray-share 0.3
//	shop -role report -graylens http://127.0.0.1:4319
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	"github.com/cloudwego/kitex/transport"
	"github.com/kitex-contrib/obs-opentelemetry/provider"
	"github.com/kitex-contrib/obs-opentelemetry/tracing"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"graylens.example/kitex/kitex_gen/shop"
	"graylens.example/kitex/kitex_gen/shop/cart"
	"graylens.example/kitex/kitex_gen/shop/inventory"
)

var (
	role          = flag.String("role", "", "inventory, cart, frontend or report")
	version       = flag.String("version", "", "service.version of this instance")
	listen        = flag.String("listen", "127.0.0.1:0", "address to serve on (inventory, cart)")
	otlp          = flag.String("otlp", "127.0.0.1:4317", "graylens's OTLP/gRPC address")
	inventoryAddr = flag.String("inventory", "", "the baseline inventory")
	grayInventory = flag.String("gray-inventory", "", "the gray inventory (colored requests only)")
	cartAddr      = flag.String("cart", "", "the cart service")
	stockDelay    = flag.Duration("stock-delay", 0, "extra time Stock takes (the gray version's regression)")
	requests      = flag.Int("requests", 3000, "frontend: requests to send")
	rate          = flag.Int("rate", 200, "frontend: requests per second")
	grayShare     = flag.Float64("gray-share", 0.3, "frontend: share of requests colored gray")
	graylensAPI   = flag.String("graylens", "http://127.0.0.1:4319", "report: graylens's API")
)

func main() {
	flag.Parse()
	if *role == "report" {
		os.Exit(report(*graylensAPI))
	}
	name := map[string]string{"inventory": "inventory", "cart": "cart", "frontend": "frontend"}[*role]
	if name == "" {
		log.Fatalf("unknown -role %q", *role)
	}
	// The SDK's batch span processor drops spans beyond its queue (2,048 by
	// default, sent every 5 s): 200 requests/s of three spans each need more.
	for k, v := range map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "65536", "OTEL_BSP_SCHEDULE_DELAY": "500"} {
		if os.Getenv(k) == "" {
			_ = os.Setenv(k, v)
		}
	}
	p := provider.NewOpenTelemetryProvider(
		provider.WithServiceName(name),
		provider.WithResourceAttribute(attribute.String("service.version", *version)),
		provider.WithExportEndpoint(*otlp),
		provider.WithInsecure(),
		provider.WithEnableMetrics(false),
	)
	recordLanes()
	defer flush(p)
	switch *role {
	case "inventory":
		serve(func(opts []server.Option) server.Server {
			return inventory.NewServer(&inventoryImpl{delay: *stockDelay}, opts...)
		}, name)
	case "cart":
		inv, gray := inventoryClients(name)
		serve(func(opts []server.Option) server.Server {
			return cart.NewServer(&cartImpl{inventory: inv, grayInventory: gray}, opts...)
		}, name)
	case "frontend":
		if failed := drive(name); failed > 0 {
			flush(p) // what was sent, before saying so
			os.Exit(1)
		}
	}
}

// flush exports the spans still queued, then stops the exporter. The
// provider's own Shutdown stops only the exporter, which loses the spans
// still in the batch processor's queue.
func flush(p provider.OtelProvider) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if tp, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		if err := tp.ForceFlush(ctx); err != nil {
			log.Printf("flushing spans: %v", err)
		}
	}
	if err := p.Shutdown(ctx); err != nil {
		log.Printf("stopping the exporter: %v", err)
	}
}

// serve runs a Kitex server until SIGTERM or SIGINT.
func serve(newServer func([]server.Option) server.Server, name string) {
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	svr := newServer([]server.Option{
		server.WithListener(ln),
		server.WithSuite(tracing.NewServerSuite()),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: name}),
		server.WithMetaHandler(transmeta.ServerTTHeaderHandler),
	})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = svr.Stop()
	}()
	// One line on stdout with the address (the port when -listen says :0).
	fmt.Printf("%s %s listening on %s\n", name, *version, ln.Addr())
	if err := svr.Run(); err != nil {
		log.Fatal(err)
	}
}

func clientOptions(caller, addr string) []client.Option {
	return []client.Option{
		client.WithHostPorts(addr),
		client.WithSuite(tracing.NewClientSuite()),
		client.WithClientBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: caller}),
		// TTHeader carries metainfo, and with it the trace context and baggage.
		client.WithTransportProtocol(transport.TTHeader),
		client.WithMetaHandler(transmeta.ClientTTHeaderHandler),
		client.WithRPCTimeout(3 * time.Second),
	}
}

func inventoryClients(caller string) (inventory.Client, inventory.Client) {
	inv, err := inventory.NewClient("inventory", clientOptions(caller, *inventoryAddr)...)
	if err != nil {
		log.Fatal(err)
	}
	gray := inv
	if *grayInventory != "" {
		if gray, err = inventory.NewClient("inventory", clientOptions(caller, *grayInventory)...); err != nil {
			log.Fatal(err)
		}
	}
	return inv, gray
}

type inventoryImpl struct{ delay time.Duration }

func (i *inventoryImpl) Stock(ctx context.Context, req *shop.StockRequest) (*shop.StockResponse, error) {
	time.Sleep(2*time.Millisecond + time.Duration(rand.Intn(2000))*time.Microsecond + i.delay)
	return &shop.StockResponse{Available: 7}, nil
}

func (i *inventoryImpl) Reserve(ctx context.Context, req *shop.ReserveRequest) (*shop.ReserveResponse, error) {
	time.Sleep(1*time.Millisecond + time.Duration(rand.Intn(1000))*time.Microsecond)
	return &shop.ReserveResponse{Ok: true}, nil
}

type cartImpl struct{ inventory, grayInventory inventory.Client }

// Add reserves the item in inventory: the second hop, colored like the first.
func (c *cartImpl) Add(ctx context.Context, req *shop.AddRequest) (*shop.AddResponse, error) {
	inv := byLane(ctx, c.inventory, c.grayInventory, *grayInventory != "")
	if _, err := inv.Reserve(ctx, &shop.ReserveRequest{Sku: req.Sku, Count: 1}); err != nil {
		return nil, err
	}
	return &shop.AddResponse{Items: 1}, nil
}

// drive sends -requests requests at -rate, coloring -gray-share of them gray.
// Each request is a root SERVER span ("GET /checkout") with two hops under it.
func drive(name string) int {
	inv, gray := inventoryClients(name)
	crt, err := cart.NewClient("cart", clientOptions(name, *cartAddr)...)
	if err != nil {
		log.Fatal(err)
	}
	tracer := otel.Tracer("shop-frontend")
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	colored, failed := 0, 0
	for n := 0; n < *requests; n++ {
		<-tick.C
		ctx := context.Background()
		if rand.Float64() < *grayShare {
			ctx = withLane(ctx, "gray")
			colored++
		}
		ctx, span := tracer.Start(ctx, "GET /checkout", trace.WithSpanKind(trace.SpanKindServer))
		sku := fmt.Sprintf("sku-%d", n%50)
		_, err1 := byLane(ctx, inv, gray, *grayInventory != "").Stock(ctx, &shop.StockRequest{Sku: sku})
		_, err2 := crt.Add(ctx, &shop.AddRequest{User: "u", Sku: sku})
		if err1 != nil || err2 != nil {
			failed++
			log.Printf("request %d: %v %v", n, err1, err2)
		}
		span.End()
	}
	log.Printf("frontend: %d requests sent, %d colored gray, %d failed", *requests, colored, failed)
	return failed
}
