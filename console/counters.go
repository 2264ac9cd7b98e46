package console

import (
	"math"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counters is /console/counters.json: every counter and gauge series of the
// registry that is labelled by stream, at one instant. The page derives
// rates from two successive documents (value deltas over At deltas).
//
// The selection is by label, not by name, so that series added later (the
// shard-level metrics, labelled stream and shard) reach the page without a
// change here; histograms are left out (the page draws no latencies).
type counters struct {
	At     int64    `json:"at"` // Unix milliseconds of the gathering
	Series []series `json:"series"`
}

// series is one labelled value. Name is the metric's name without the
// "shardlog_" prefix.
type series struct {
	Name   string  `json:"name"`
	Stream string  `json:"stream"`
	Shard  string  `json:"shard,omitempty"`
	Value  float64 `json:"value"`
}

func gatherCounters(g prometheus.Gatherer, now time.Time) (counters, error) {
	fams, err := g.Gather()
	if err != nil {
		return counters{}, err
	}
	c := counters{At: now.UnixMilli(), Series: []series{}}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			s, ok := toSeries(f, m)
			if ok {
				c.Series = append(c.Series, s)
			}
		}
	}
	return c, nil
}

// toSeries reads one metric; ok is false when it is not a stream's counter
// or gauge, or its value is not a finite number (JSON has no NaN).
func toSeries(f *dto.MetricFamily, m *dto.Metric) (series, bool) {
	s := series{Name: strings.TrimPrefix(f.GetName(), "shardlog_")}
	for _, l := range m.GetLabel() {
		switch l.GetName() {
		case "stream":
			s.Stream = l.GetValue()
		case "shard":
			s.Shard = l.GetValue()
		}
	}
	switch {
	case m.GetCounter() != nil:
		s.Value = m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		s.Value = m.GetGauge().GetValue()
	default:
		return s, false
	}
	return s, s.Stream != "" && !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0)
}
