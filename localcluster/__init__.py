"""Embedded local cluster for testing llm_serving.gke (test infrastructure, not collection content).

A real kube-apiserver/controller-manager/scheduler with etcd on loopback, plus small simulators
for what cannot run here (GKE API, accelerator nodes, KServe llmisvc controller, GKE gateway, vLLM).
"""
