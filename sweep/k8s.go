package sweep

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// K8sOptions describe the Kubernetes Indexed Job that runs a sweep's
// shards.
type K8sOptions struct {
	// Name is the Job's name (a DNS label: lower-case letters, digits, '-').
	Name string
	// Shards is the number of pods, one per shard (completions =
	// parallelism = Shards).
	Shards int
	// Image is the container image holding slatrun and ONNX Runtime;
	// Command is how to start slatrun in it (default ["slatrun"]).
	Image   string
	Command []string
	// Args are the "slatrun sweep" flags every shard shares (the grid, the
	// training and eval flags, --workers, --threads); K8sJob adds
	// --shard=env/N and --out.
	Args []string
	// PVC is the PersistentVolumeClaim (ReadWriteMany) mounted at Mount;
	// every shard writes its cells into Mount/Dir, where "slatrun sweep
	// --merge" then builds the report.
	PVC, Mount, Dir string
	// CPU and Memory are each pod's resource requests (and limits), e.g.
	// "2" and "8Gi".
	CPU, Memory string
	// BackoffLimit is the number of pod failures the Job tolerates (pods
	// that fail resume their shard's cells; default 2 per shard).
	BackoffLimit int
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// K8sJob returns the manifest of a batch/v1 Job with completionMode
// Indexed: Shards pods, each running "slatrun sweep --shard=env/N" so that
// the pod takes its shard index from JOB_COMPLETION_INDEX, all writing to
// one directory on a shared volume. The manifest is JSON, which is also
// valid YAML: kubectl apply -f takes it as it is.
func K8sJob(o K8sOptions) ([]byte, error) {
	if !dnsLabel.MatchString(o.Name) || len(o.Name) > 63 {
		return nil, fmt.Errorf("sweep: Kubernetes job name %q: want lower-case letters, digits and '-' (at most 63)", o.Name)
	}
	if o.Shards < 1 {
		return nil, fmt.Errorf("sweep: %d shards: want at least 1", o.Shards)
	}
	if o.Image == "" || o.PVC == "" || o.Mount == "" || !strings.HasPrefix(o.Mount, "/") {
		return nil, fmt.Errorf("sweep: the Kubernetes job needs an image, a PVC and an absolute mount path")
	}
	if len(o.Command) == 0 {
		o.Command = []string{"slatrun"}
	}
	if o.BackoffLimit == 0 {
		o.BackoffLimit = 2 * o.Shards
	}
	out := strings.TrimSuffix(o.Mount, "/") + "/" + strings.Trim(o.Dir, "/")
	args := append([]string{"sweep"}, o.Args...)
	args = append(args, fmt.Sprintf("--shard=env/%d", o.Shards), "--out="+out)
	res := map[string]any{}
	if o.CPU != "" || o.Memory != "" {
		q := map[string]string{}
		if o.CPU != "" {
			q["cpu"] = o.CPU
		}
		if o.Memory != "" {
			q["memory"] = o.Memory
		}
		res = map[string]any{"requests": q, "limits": q}
	}
	labels := map[string]string{"app.kubernetes.io/name": "slatrun", "app.kubernetes.io/component": "sweep", "slatrun/sweep": o.Name}
	job := map[string]any{
		"apiVersion": "batch/v1",
		"kind":       "Job",
		"metadata":   map[string]any{"name": o.Name, "labels": labels},
		"spec": map[string]any{
			"completionMode": "Indexed",
			"completions":    o.Shards,
			"parallelism":    o.Shards,
			"backoffLimit":   o.BackoffLimit,
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{
					"restartPolicy": "Never",
					"containers": []any{map[string]any{
						"name":         "sweep",
						"image":        o.Image,
						"command":      o.Command,
						"args":         args,
						"resources":    res,
						"volumeMounts": []any{map[string]any{"name": "results", "mountPath": o.Mount}},
					}},
					"volumes": []any{map[string]any{
						"name":                  "results",
						"persistentVolumeClaim": map[string]any{"claimName": o.PVC},
					}},
				},
			},
		},
	}
	b, err := json.MarshalIndent(job, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
