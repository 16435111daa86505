package main

// The report: graylens's lane comparison of inventory, colored ("gray")
// against uncolored traffic, as its API gives it (GET /api/v1/compare?by=lane).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"time"
)

type side struct {
	Requests  uint64   `json:"requests"`
	ErrorRate *float64 `json:"error_rate"`
	Latency   struct {
		P50 *float64 `json:"p50"`
		P99 *float64 `json:"p99"`
	} `json:"latency_ms"`
}

type comparison struct {
	Baseline side `json:"baseline"`
	Canary   side `json:"canary"`
	Verdict  struct {
		Decision string   `json:"decision"`
		Score    float64  `json:"score"`
		Reasons  []string `json:"reasons"`
	} `json:"verdict"`
	Operations []struct {
		Name       string   `json:"name"`
		P50DeltaMs *float64 `json:"p50_delta_ms"`
		AdjustedP  *float64 `json:"adjusted_p_value"`
		Baseline   struct {
			P50 *float64 `json:"p50_ms"`
		} `json:"baseline"`
		Canary struct {
			P50 *float64 `json:"p50_ms"`
		} `json:"canary"`
	} `json:"operations"`
	Lanes *struct {
		Baseline     lane `json:"baseline"`
		Canary       lane `json:"canary"`
		Contributors []struct {
			Service  string  `json:"service"`
			Op       string  `json:"operation"`
			Baseline float64 `json:"baseline_ms_per_trace"`
			Canary   float64 `json:"canary_ms_per_trace"`
			Delta    float64 `json:"delta_ms_per_trace"`
		} `json:"contributors"`
	} `json:"lanes"`
}

type lane struct {
	Lane   string   `json:"lane"`
	Traces uint64   `json:"traces"`
	P50    *float64 `json:"p50_ms"`
	P99    *float64 `json:"p99_ms"`
}

func ms(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", *v)
}

func laneName(l string) string {
	if l == "" {
		return "(uncolored)"
	}
	return l
}

func report(api string) int {
	q := url.Values{"service": {"inventory"}, "baseline": {""}, "canary": {"gray"}, "by": {"lane"}}
	u := api + "/api/v1/compare?" + q.Encode()
	c := http.Client{Timeout: 30 * time.Second}
	r, err := c.Get(u)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		fmt.Fprintf(os.Stderr, "GET %s: %s\n", u, r.Status)
		return 2
	}
	var cmp comparison
	if err := json.NewDecoder(r.Body).Decode(&cmp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("graylens: inventory, lane gray against uncolored traffic (%s)\n\n", u)
	fmt.Printf("  %-12s %9s %10s %10s\n", "lane", "requests", "p50", "p99")
	fmt.Printf("  %-12s %9d %10s %10s\n", "(uncolored)", cmp.Baseline.Requests, ms(cmp.Baseline.Latency.P50), ms(cmp.Baseline.Latency.P99))
	fmt.Printf("  %-12s %9d %10s %10s\n\n", "gray", cmp.Canary.Requests, ms(cmp.Canary.Latency.P50), ms(cmp.Canary.Latency.P99))
	ops := cmp.Operations
	sort.SliceStable(ops, func(i, j int) bool {
		d := func(k int) float64 {
			if ops[k].P50DeltaMs == nil {
				return 0
			}
			return *ops[k].P50DeltaMs
		}
		return d(i) > d(j)
	})
	fmt.Println("  inventory's operations (p50, uncolored → gray):")
	for _, o := range ops {
		p := "-"
		if o.AdjustedP != nil {
			p = fmt.Sprintf("%.2g", *o.AdjustedP)
		}
		fmt.Printf("    %-24s %10s → %-10s adjusted p %s\n", o.Name, ms(o.Baseline.P50), ms(o.Canary.P50), p)
	}
	if l := cmp.Lanes; l != nil {
		fmt.Printf("\n  whole traces: %s %d traces p50 %s, %s %d traces p50 %s\n",
			laneName(l.Baseline.Lane), l.Baseline.Traces, ms(l.Baseline.P50), laneName(l.Canary.Lane), l.Canary.Traces, ms(l.Canary.P50))
		fmt.Println("  where the delta comes from (self time per trace):")
		for i, x := range l.Contributors {
			if i == 3 {
				break
			}
			fmt.Printf("    %s %s: %+.2f ms per trace\n", x.Service, x.Op, x.Delta)
		}
	}
	if rows, err := spansBy(c, api); err == nil {
		fmt.Println("\n  spans received (service, version, lane):")
		for _, r := range rows {
			fmt.Printf("    %-10v %-12v %-10v %v\n", r[0], r[1], laneName(fmt.Sprint(r[2])), r[3])
		}
	} else {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("\nverdict: %s (score %.2f)\n", cmp.Verdict.Decision, cmp.Verdict.Score)
	for _, reason := range cmp.Verdict.Reasons {
		fmt.Printf("  - %s\n", reason)
	}
	return 0
}

// spansBy counts the spans graylens stored per service, version and lane (SQL).
func spansBy(c http.Client, api string) ([][]any, error) {
	body, _ := json.Marshal(map[string]string{"sql": "SELECT service_name, service_version, " +
		"coalesce(traffic_lane, ''), count(*) FROM spans GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"})
	r, err := c.Post(api+"/api/v1/sql", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	var out struct {
		Rows  [][]any `json:"rows"`
		Error string  `json:"error"`
	}
	if err := json.NewDecoder(r.Body).Decode(&out); err != nil {
		return nil, err
	}
	if r.StatusCode != 200 {
		return nil, fmt.Errorf("SQL: %s", out.Error)
	}
	return out.Rows, nil
}
