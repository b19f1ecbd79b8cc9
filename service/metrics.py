"""Prometheus metrics: jobs by state, queue depth, queue-wait and run-time histograms, and HTTP
request latency, served as text on ``GET /metrics``.

Each app has its own :class:`prometheus_client.CollectorRegistry`, so two apps in one process
(tests) do not share counters. Job counts are read from the store at scrape time (the database
is the source of truth, across replicas); the two job-latency histograms observe the jobs this
process's dispatcher finishes (with several replicas, sum them in Prometheus).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qldm.jobs.model import Job, JobStatus

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_JOB_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """The metrics of one app.

    Args:
        counts: returns the number of jobs per state (``store.counts_by_status``).
    """

    def __init__(self, counts: Callable[[], dict[Any, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_latency = Histogram(
            "qldm_http_request_duration_seconds",
            "HTTP request latency by method, route template and status.",
            ("method", "route", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "qldm_job_queue_wait_seconds",
            "Seconds from submission to the (last) start of finished jobs.",
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.run_time = Histogram(
            "qldm_job_run_seconds",
            "Seconds from the (last) start to the end of finished jobs.",
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_JobCollector(counts))

    def observe_job(self, job: Job) -> None:
        """Record a finished job's queue wait and run time."""
        if job.queue_seconds is not None:
            self.queue_wait.observe(max(0.0, job.queue_seconds))
        if job.run_seconds is not None:
            self.run_time.observe(max(0.0, job.run_seconds))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _JobCollector(Collector):
    """Jobs by state and queue depth, read from the store at scrape time."""

    def __init__(self, counts: Callable[[], dict[Any, int]]) -> None:
        self._counts = counts

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = {str(k): int(v) for k, v in self._counts().items()}
        by_state = GaugeMetricFamily("qldm_jobs", "Jobs in the store by state.", labels=["state"])
        for status in JobStatus:
            by_state.add_metric([status.value], counts.get(status.value, 0))
        yield by_state
        yield GaugeMetricFamily(
            "qldm_queue_depth",
            "Jobs waiting for a worker.",
            value=counts.get(JobStatus.QUEUED.value, 0),
        )


class MetricsMiddleware:
    """Times every HTTP request (by route template, not raw path, so ids do not blow up)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http_latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
