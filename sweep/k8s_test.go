package sweep

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestK8sJob(t *testing.T) {
	b, err := K8sJob(K8sOptions{Name: "slatrun-sweep-fmnist", Shards: 3, Image: "registry.example/slatrun:1", Command: []string{"/usr/local/bin/slatrun"},
		Args: []string{"--model=convnet", "--methods=slat,fgsm"}, PVC: "results", Mount: "/results", Dir: "fmnist", CPU: "2", Memory: "8Gi"})
	if err != nil {
		t.Fatal(err)
	}
	// The manifest is JSON (so also YAML); decode it into the fields
	// Kubernetes reads.
	var job struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			CompletionMode string `json:"completionMode"`
			Completions    int    `json:"completions"`
			Parallelism    int    `json:"parallelism"`
			BackoffLimit   int    `json:"backoffLimit"`
			Template       struct {
				Spec struct {
					RestartPolicy string `json:"restartPolicy"`
					Containers    []struct {
						Name      string   `json:"name"`
						Image     string   `json:"image"`
						Command   []string `json:"command"`
						Args      []string `json:"args"`
						Resources struct {
							Requests map[string]string `json:"requests"`
							Limits   map[string]string `json:"limits"`
						} `json:"resources"`
						VolumeMounts []struct {
							Name      string `json:"name"`
							MountPath string `json:"mountPath"`
						} `json:"volumeMounts"`
					} `json:"containers"`
					Volumes []struct {
						Name string `json:"name"`
						PVC  struct {
							ClaimName string `json:"claimName"`
						} `json:"persistentVolumeClaim"`
					} `json:"volumes"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(b, &job); err != nil {
		t.Fatal(err)
	}
	s := job.Spec
	if job.APIVersion != "batch/v1" || job.Kind != "Job" || job.Metadata.Name != "slatrun-sweep-fmnist" {
		t.Errorf("header: %+v", job)
	}
	if s.CompletionMode != "Indexed" || s.Completions != 3 || s.Parallelism != 3 || s.BackoffLimit < 1 {
		t.Errorf("spec: %+v", s)
	}
	pod := s.Template.Spec
	if pod.RestartPolicy != "Never" || len(pod.Containers) != 1 || len(pod.Volumes) != 1 {
		t.Fatalf("pod: %+v", pod)
	}
	c := pod.Containers[0]
	if c.Image != "registry.example/slatrun:1" || !slices.Equal(c.Command, []string{"/usr/local/bin/slatrun"}) {
		t.Errorf("container: %+v", c)
	}
	wantArgs := []string{"sweep", "--model=convnet", "--methods=slat,fgsm", "--shard=env/3", "--out=/results/fmnist"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %q, want %q", c.Args, wantArgs)
	}
	if c.Resources.Requests["cpu"] != "2" || c.Resources.Limits["memory"] != "8Gi" {
		t.Errorf("resources: %+v", c.Resources)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/results" || c.VolumeMounts[0].Name != pod.Volumes[0].Name ||
		pod.Volumes[0].PVC.ClaimName != "results" {
		t.Errorf("volume: %+v %+v", c.VolumeMounts, pod.Volumes)
	}
	// The pod's shard flag takes the index from JOB_COMPLETION_INDEX.
	for i := range 3 {
		sh, err := ParseShard("env/3", func(string) string { return []string{"0", "1", "2"}[i] })
		if err != nil || sh != (Shard{i, 3}) {
			t.Errorf("pod %d: shard %v %v", i, sh, err)
		}
	}

	for _, bad := range []K8sOptions{
		{Name: "Bad_Name", Shards: 1, Image: "i", PVC: "p", Mount: "/r"},
		{Name: "ok", Shards: 0, Image: "i", PVC: "p", Mount: "/r"},
		{Name: "ok", Shards: 1, PVC: "p", Mount: "/r"},
		{Name: "ok", Shards: 1, Image: "i", PVC: "p", Mount: "r"},
	} {
		if _, err := K8sJob(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
