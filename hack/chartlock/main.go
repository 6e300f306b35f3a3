// chartlock writes Chart.lock for a chart whose charts/ directory already holds its
// dependencies (vendored by hack/vendor-charts.sh), with the digest that
// `helm dependency build` checks, as `helm dependency update` would write it had it
// been able to reach the chart repositories.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/provenance"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chartlock CHART_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "chartlock:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	c, err := loader.LoadDir(dir)
	if err != nil {
		return err
	}
	req := c.Metadata.Dependencies
	vendored := map[string]string{}
	for _, sub := range c.Dependencies() {
		vendored[sub.Name()] = sub.Metadata.Version
	}
	lock := make([]*chart.Dependency, 0, len(req))
	for _, d := range req {
		v, ok := vendored[d.Name]
		if !ok {
			return fmt.Errorf("dependency %q is not in %s", d.Name, filepath.Join(dir, "charts"))
		}
		lock = append(lock, &chart.Dependency{Name: d.Name, Repository: d.Repository, Version: v})
	}
	// Same as helm's internal resolver.HashReq.
	data, err := json.Marshal([2][]*chart.Dependency{req, lock})
	if err != nil {
		return err
	}
	sum, err := provenance.Digest(bytes.NewBuffer(data))
	if err != nil {
		return err
	}
	digest := "sha256:" + sum
	path := filepath.Join(dir, "Chart.lock")
	// An unchanged lock keeps its generated time, so re-vendoring leaves no diff.
	if c.Lock != nil && c.Lock.Digest == digest {
		return nil
	}
	out, err := yaml.Marshal(&chart.Lock{Generated: time.Now().UTC(), Digest: digest, Dependencies: lock})
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}
