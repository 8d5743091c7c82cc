"""Prometheus metrics: queue depth, latency histograms, errors by type."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, store: Any) -> None:
        self.registry = CollectorRegistry()
        depth = Gauge("bgone_queue_depth", "Requests waiting in the queue", registry=self.registry)
        depth.set_function(store.queue_depth)
        self.http = Histogram(
            "bgone_http_request_seconds", "HTTP request latency", ["method", "route", "status"], registry=self.registry
        )
        self.jobs = Counter(
            "bgone_requests_total", "Completed requests", ["endpoint", "status"], registry=self.registry
        )
        self.errors = Counter(
            "bgone_errors_total", "Failed requests by error type", ["error_type"], registry=self.registry
        )
        self.inference = Histogram(
            "bgone_inference_seconds",
            "Model time per batch",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.latency = Histogram(
            "bgone_request_seconds",
            "Submit to completion",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )

    def observe_http(self, request: Any, status: int, seconds: float) -> None:
        route = request.scope.get("route")
        self.http.labels(request.method, getattr(route, "path", "unmatched"), str(status)).observe(seconds)

    def observe_job(self, job: Any) -> None:
        self.jobs.labels(job.endpoint, str(job.result_status)).inc()
        if job.error_type:
            self.errors.labels(job.error_type).inc()
        if job.metrics and "inference_time" in job.metrics:
            self.inference.observe(job.metrics["inference_time"])
        if job.completed_at and job.created_at:
            self.latency.labels(job.endpoint).observe(job.completed_at - job.created_at)

    def render(self) -> bytes:
        return generate_latest(self.registry)
