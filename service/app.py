"""The FastAPI app: versioned REST under ``/v1``, health, readiness and metrics.

Routes are thin: they validate, call one function of :class:`qldm.jobs.store.JobStore`, and return a
response model. The lifespan opens the store, migrates it, and runs the dispatcher (which
re-dispatches queued and running work left by an earlier process) until shutdown.

See ``docs/api.md`` for the endpoints, the bodies, the binary format and the error codes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from qldm.errors import JobNotFinishedError
from qldm.jobs._estimate import estimate_request
from qldm.jobs.model import TERMINAL, Job, JobRequest, JobStatus, Run
from qldm.jobs.store import MAX_LOSS_POINTS, JobStore
from qldm.service import catalog
from qldm.service.arrays import NPZ_MEDIA_TYPE, with_document
from qldm.service.auth import DEFAULT_TENANT, KeyCache, key_from_headers
from qldm.service.bodies import BodyReader
from qldm.service.errors import error_body, install_error_handlers
from qldm.service.limits import BodyLimitMiddleware
from qldm.service.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from qldm.service.prefer import preferred_wait
from qldm.service.runtime import Runtime
from qldm.service.schemas import (
    BackendPublic,
    BackendsPublic,
    ErrorPublic,
    EstimatePublic,
    JobPublic,
    JobsPublic,
    JobSubmitted,
    LossPoint,
    ResultPublic,
    RunCreate,
    RunLossesCreate,
    RunLossesPublic,
    RunPublic,
    RunsPublic,
)
from qldm.service.settings import Settings, get_settings
from qldm.service.ui import install_ui

__all__ = ["create_app"]

log = logging.getLogger("qldm.service")

_MAX_KEY_LENGTH = 255
MAX_OFFSET = 2**63 - 1
"""The largest list offset: SQL's 64-bit integers (SQLite overflows past it: a 422, not a 500)."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 404, 409, 410, 413, 415, 422)
}


# ---------------------------------------------------------------------- dependencies


@dataclass
class _State:
    settings: Settings
    runtime: Runtime
    keys: KeyCache
    metrics: Metrics
    bodies: BodyReader


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in
# its thread pool, a hop that cost about a millisecond each per request.


async def _state(request: Request) -> _State:
    state: _State = request.app.state.qldm
    return state


StateDep = Annotated[_State, Depends(_state)]


async def _settings(state: StateDep) -> Settings:
    return state.settings


# The app's own settings (``create_app(settings)``), not a ``dependency_overrides`` entry:
# FastAPI re-analyses overridden dependencies on every request (a third of a GET's time).
SettingsDep = Annotated[Settings, Depends(_settings)]


async def _store(state: StateDep) -> JobStore:
    return state.runtime.store


StoreDep = Annotated[JobStore, Depends(_store)]


async def _tenant(
    state: StateDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    if not state.settings.auth_enabled:
        return DEFAULT_TENANT
    key = key_from_headers(authorization, x_api_key)
    cached = state.keys.cached_tenant(key)
    if cached is not None:
        return cached
    return await run_in_threadpool(state.keys.tenant, key)  # may query the store


TenantDep = Annotated[str, Depends(_tenant)]


async def _job_document(request: Request, state: StateDep) -> dict[str, Any]:
    """The body of ``POST /v1/jobs`` as a dict: JSON, or npz (arrays + a ``json`` entry),
    with NaN and infinities refused wherever they are; large bodies are read off the event
    loop (:class:`qldm.service.bodies.BodyReader`)."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    body = await request.body()
    return await state.bodies.read(media, body)


JobDocumentDep = Annotated[dict[str, Any], Depends(_job_document)]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(max_length=_MAX_KEY_LENGTH, description="the same key returns the same job"),
]
PreferHeader = Annotated[
    str | None, Header(description="`wait=S`: answer with the result if it is ready in S s")
]
AcceptHeader = Annotated[str | None, Header(description=f"`{NPZ_MEDIA_TYPE}` for an npz result")]


def _wants_npz(accept: str | None) -> bool:
    return bool(accept) and NPZ_MEDIA_TYPE in str(accept)


# ---------------------------------------------------------------------- routes

router = APIRouter(prefix="/v1", responses=_ERRORS)

_JOB_CREATE_OPENAPI = {
    # the body is read by hand (JSON or npz), so FastAPI does not describe it by itself
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}},
            NPZ_MEDIA_TYPE: {
                "schema": {"type": "string", "format": "binary"},
                "description": "npz archive: a 'json' uint8 entry and the array fields",
            },
        },
    },
}


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobSubmitted,
    openapi_extra=_JOB_CREATE_OPENAPI,
    responses={
        200: {
            "description": "with `Prefer: wait=S`: the job succeeded within `S` seconds and "
            "the body is its result (the header `Content-Location` names the result); "
            "otherwise, a repeated `Idempotency-Key`: the earlier job",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ResultPublic"}},
                NPZ_MEDIA_TYPE: {},
            },
        },
        429: {
            "model": ErrorPublic,
            "description": "`too_many_jobs`: the tenant has as many jobs queued or running as "
            "the server allows one tenant; retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
    summary="Submit a job",
)
async def submit_job(
    state: StateDep,
    tenant: TenantDep,
    document: JobDocumentDep,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: PreferHeader = None,
    accept: AcceptHeader = None,
) -> Response:
    """Validate and store a job; ``Idempotency-Key`` returns the same job for the same key.

    ``Prefer: wait=S`` (RFC 7240) answers with the job's result (200, as ``GET
    /v1/jobs/{id}/result`` would) when it succeeds within ``S`` seconds: one exchange per job.
    Otherwise the answer is the job's id and latest status, as without the header.
    """
    wait = preferred_wait(prefer, max_wait_s=state.settings.max_wait_s)
    key = idempotency_key if state.settings.idempotency else None
    job, created = await run_in_threadpool(_accept, state, tenant, document, key)
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if wait is not None:
        headers["Preference-Applied"] = f"wait={wait:g}"
        if job.status not in TERMINAL:
            job = await state.runtime.wait(job, timeout=wait)
        if job.status is JobStatus.SUCCEEDED:
            answer = await _result(state, tenant, job, accept)
            answer.headers.update({**headers, "Content-Location": f"/v1/jobs/{job.id}/result"})
            return answer
    body = JobSubmitted(id=job.id, status=job.status).model_dump(mode="json")
    return JSONResponse(body, status_code=202 if created else 200, headers=headers)


def _accept(
    state: _State, tenant: str, document: dict[str, Any], key: str | None
) -> tuple[Job, bool]:
    """Validate a job request completely (schema, shapes, backend limits), then store it:
    nothing is stored when any check fails."""
    request = _validated(state, document)
    return state.runtime.submit(tenant=tenant, request=request, idempotency_key=key)


def _validated(state: _State, document: dict[str, Any]) -> JobRequest:
    """The job request, checked completely (schema, shapes, backend limits)."""
    settings = state.settings
    request = JobRequest.parse(document)
    catalog.check_request(
        request,
        ibm_configured=settings.ibm_token is not None,
        max_batch=settings.max_batch,
        max_shots=settings.max_shots,
    )
    return request


@router.post(
    "/estimate", response_model=EstimatePublic, summary="Price a job on a device without running it"
)
async def estimate_job(
    state: StateDep, tenant: TenantDep, document: JobDocumentDep
) -> EstimatePublic:
    """The runtime cost of a job (the body of ``POST /v1/jobs``) on a ``fake:``, ``ibm:`` or
    ``aer:<device>`` backend: circuits, executions, runtime jobs under the per-job limit, QPU
    seconds (a lower bound). The job is validated as a submission would be; nothing is stored
    or run. Other backends are refused (400 ``backend_limit``, field ``backend``)."""
    return await run_in_threadpool(_estimate, state, document)


def _estimate(state: _State, document: dict[str, Any]) -> EstimatePublic:
    request = _validated(state, document)
    return EstimatePublic(**estimate_request(request, state.settings.runtime_config()))


@router.get("/jobs", response_model=JobsPublic, summary="List jobs")
def list_jobs(
    store: StoreDep,
    tenant: TenantDep,
    status: JobStatus | None = None,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JobsPublic:
    """A page of the tenant's jobs, newest first, and how many match."""
    jobs, total = store.list(
        tenant=tenant, status=status, run_id=run_id, limit=limit, offset=offset
    )
    return JobsPublic(data=[JobPublic.of(j) for j in jobs], count=total)


@router.get("/jobs/{job_id}", response_model=JobPublic, summary="Get a job")
def get_job(job_id: str, store: StoreDep, tenant: TenantDep) -> JobPublic:
    """The job's state, timings, attempts and error."""
    return JobPublic.of(store.get(tenant=tenant, job_id=job_id))


@router.delete("/jobs/{job_id}", response_model=JobPublic, summary="Cancel a job")
def cancel_job(job_id: str, state: StateDep, tenant: TenantDep) -> JobPublic:
    """Cancel: a queued job never runs, a running one stops at its next chunk, a finished
    one is left as it is."""
    return JobPublic.of(state.runtime.cancel(tenant=tenant, job_id=job_id))


@router.get(
    "/jobs/{job_id}/result",
    response_model=ResultPublic,
    responses={200: {"content": {NPZ_MEDIA_TYPE: {}}}},
    summary="Get a job's result",
)
async def job_result(
    job_id: str,
    state: StateDep,
    tenant: TenantDep,
    wait: Annotated[
        float, Query(ge=0.0, allow_inf_nan=False, description="seconds to wait for the job")
    ] = 0.0,
    accept: AcceptHeader = None,
) -> Response:
    """The result of a succeeded job (JSON, or npz with ``Accept: application/x-npz``).

    ``wait`` long-polls: the answer comes as soon as the job finishes, or after ``wait``
    seconds (then 409 ``not_finished``).
    """
    store = state.runtime.store
    job = await run_in_threadpool(store.get, tenant=tenant, job_id=job_id)
    if job.status not in TERMINAL and wait > 0:
        job = await state.runtime.wait(job, timeout=min(wait, state.settings.max_wait_s))
    if job.status is not JobStatus.SUCCEEDED:
        return _unfinished(job)
    return await _result(state, tenant, job, accept)


async def _result(state: _State, tenant: str, job: Job, accept: str | None) -> Response:
    """The answer for a succeeded ``job`` whose owner was checked: npz when ``accept`` asks
    for it, else JSON. A result this process just stored is served from memory; either way
    the arrays go out in the npz blob the store keeps."""
    recent = state.runtime.store.take_result(job.id)
    if recent is None:
        recent = await run_in_threadpool(
            state.runtime.store.result_and_blob, tenant=tenant, job_id=job.id
        )
    result, blob = recent
    if _wants_npz(accept):
        document = {
            "id": job.id,
            "status": job.status.value,
            "counts": result.counts,
            "metadata": result.metadata,
        }
        # the arrays are encoded already: add the document as one more entry (~0.1 ms)
        return Response(with_document(blob, document), media_type=NPZ_MEDIA_TYPE)
    public = ResultPublic.of(job.id, result)
    return JSONResponse(public.model_dump(mode="json"))


def _unfinished(job: Job) -> JSONResponse:
    if job.status is JobStatus.FAILED:
        body = error_body(
            "job_failed",
            f"job {job.id} failed: {job.error_message or job.error_code}",
            "job_id",
            job_error={"code": job.error_code or "backend_error", "message": job.error_message},
        )
    elif job.status is JobStatus.CANCELLED:
        body = error_body("cancelled", f"job {job.id} was cancelled: it has no result", "job_id")
    else:
        exc = JobNotFinishedError(f"job {job.id} is {job.status.value}", field="job_id")
        body = error_body(exc.code, exc.message, exc.field, status=job.status.value)
    return JSONResponse(body, status_code=409)


@router.get("/backends", response_model=BackendsPublic, summary="List backends")
def list_backends(settings: SettingsDep, tenant: TenantDep) -> BackendsPublic:
    """Every backend the server offers, with its qubit count."""
    entries = [
        BackendPublic(name=b.name, kind=b.kind, qubits=b.qubits, available=b.available)
        for b in catalog.catalog(ibm=settings.ibm_options() or None)
    ]
    return BackendsPublic(data=entries, count=len(entries))


@router.post("/runs", status_code=201, response_model=RunPublic, summary="Open a run")
def create_run(
    body: RunCreate, store: StoreDep, tenant: TenantDep, settings: SettingsDep
) -> RunPublic:
    """Open a run: a group of jobs (one training run). Its first job on a ``fake:``/``ibm:``
    backend opens the run's runtime Session; its later runtime jobs run in it. A backend this
    server cannot run is refused (422 ``unknown_backend``)."""
    catalog.check_backend(body.backend, ibm_configured=settings.ibm_token is not None)
    name = body.name or "run"
    run = store.create_run(
        tenant=tenant, name=name, backend=body.backend, execution_mode=body.execution_mode
    )
    return RunPublic.of(run)


def _runs_public(store: JobStore, tenant: str, runs: list[Run]) -> list[RunPublic]:
    counts = store.run_job_counts(tenant=tenant, run_ids=[r.id for r in runs])
    return [RunPublic.of(r, job_counts=counts.get(r.id)) for r in runs]


@router.get("/runs", response_model=RunsPublic, summary="List runs")
def list_runs(
    store: StoreDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> RunsPublic:
    """A page of the tenant's runs, newest first."""
    runs, total = store.list_runs(tenant=tenant, limit=limit, offset=offset)
    return RunsPublic(data=_runs_public(store, tenant, runs), count=total)


@router.get("/runs/{run_id}", response_model=RunPublic, summary="Get a run")
def get_run(run_id: str, store: StoreDep, tenant: TenantDep) -> RunPublic:
    """The run, with its jobs counted by status."""
    return _runs_public(store, tenant, [store.get_run(tenant=tenant, run_id=run_id)])[0]


@router.post(
    "/runs/{run_id}/losses",
    response_model=RunLossesPublic,
    summary="Report training losses",
)
def add_run_losses(
    run_id: str, body: RunLossesCreate, store: StoreDep, tenant: TenantDep
) -> RunLossesPublic:
    """Record the training client's losses for its run (the dashboard draws them); a step
    reported again replaces its loss. The answer counts the run's points."""
    store.add_run_losses(
        tenant=tenant, run_id=run_id, points=[(p.step, p.loss) for p in body.points]
    )
    _, total = store.run_losses(tenant=tenant, run_id=run_id, limit=1)
    return RunLossesPublic(data=[], count=total)


@router.get("/runs/{run_id}/losses", response_model=RunLossesPublic, summary="Get a run's losses")
def run_losses(
    run_id: str,
    store: StoreDep,
    tenant: TenantDep,
    after: Annotated[int, Query(ge=-1, le=MAX_OFFSET, description="only steps after this")] = -1,
    limit: Annotated[int, Query(ge=1, le=MAX_LOSS_POINTS)] = MAX_LOSS_POINTS,
) -> RunLossesPublic:
    """The run's losses by step, from ``after + 1`` on (a page of at most ``limit``)."""
    points, total = store.run_losses(tenant=tenant, run_id=run_id, after=after, limit=limit)
    return RunLossesPublic(data=[LossPoint(step=s, loss=v) for s, v in points], count=total)


@router.delete("/runs/{run_id}", response_model=RunPublic, summary="Close a run")
def close_run(run_id: str, state: StateDep, tenant: TenantDep) -> RunPublic:
    """Close a run: it takes no more jobs, and its runtime Session is closed (closing twice
    is a no-op)."""
    return RunPublic.of(state.runtime.close_run(tenant=tenant, run_id=run_id))


ops = APIRouter(include_in_schema=True)


@ops.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """200 while the process serves requests."""
    return {"status": "ok"}


@ops.get("/readyz", summary="Readiness", responses={503: {"model": ErrorPublic}})
def readyz(state: StateDep) -> JSONResponse:
    """200 when the database answers and the dispatcher runs, else 503."""
    problems = state.runtime.problems()
    if problems:
        return JSONResponse(error_body("unavailable", "; ".join(problems)), status_code=503)
    return JSONResponse({"status": "ready"})


@ops.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    """Prometheus text: jobs by state, queue depth, job and HTTP latency histograms."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


# ---------------------------------------------------------------------- the app


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (``None``: :func:`get_settings`).

    Raises:
        UnsafeSettingsError: the settings would expose the server (see
            :meth:`Settings.check_safe`).
    """
    settings = settings or get_settings()
    settings.check_safe()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(runtime.start, asyncio.get_running_loop())
        if settings.auth_enabled and not await run_in_threadpool(runtime.store.has_api_keys):
            log.warning("auth is on but no API key exists: create one with `qldm keys create`")
        try:
            yield
        finally:
            app.state.qldm.bodies.close()
            await run_in_threadpool(runtime.stop)

    # FastAPIOffline: FastAPI with /docs and /redoc served from fastapi-offline's own copies
    # of Swagger UI and ReDoc (FastAPI's own pages load them from a CDN)
    app = FastAPIOffline(
        title="qldm",
        version="1",
        summary="Parameterized quantum circuits as jobs: exact, Aer, IBM Runtime.",
        lifespan=lifespan,
    )
    metrics_ = Metrics(runtime.counts)
    runtime.on_finished = metrics_.observe_job
    app.state.qldm = _State(
        settings=settings,
        runtime=runtime,
        keys=KeyCache(runtime, ttl_s=5.0),
        metrics=metrics_,
        bodies=BodyReader(max_bytes=settings.max_body_bytes, max_batch=settings.max_batch),
    )
    install_error_handlers(app)
    _document_job_request(app)
    app.include_router(router)
    app.include_router(ops)
    install_ui(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics_)
    return app


def _document_job_request(app: FastAPI) -> None:
    """Put the ``JobRequest`` schema into the OpenAPI components (the route reads its body
    by hand, to take JSON and npz, so FastAPI does not add it by itself)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        job = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(job.pop("$defs", {}))
        components["JobRequest"] = job
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
