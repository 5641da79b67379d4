"""The six task endpoints under /api/{user_id}/tasks; every one needs the owner's bearer token."""

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from backend import crud
from backend.dependencies import Owner, TaskId
from backend.models import DECIMAL, TaskCompletion, TaskCreate, TaskRead, TaskUpdate
from backend.openapi import AUTH_RESPONSES, EDGE_RESPONSES, Responses, documented
from backend.schemas import SortField, SortOrder, StatusFilter, TaskRow, task_json, tasks_json

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
TASK_NOT_FOUND = "Task not found"

_not_found: Responses = {status.HTTP_404_NOT_FOUND: documented(TASK_NOT_FOUND)}
_listed: Responses = {
    200: {
        "headers": {
            "X-Total-Count": {"description": "Matching tasks before limit/offset", "schema": {"type": "integer"}}
        }
    }
}
_created: Responses = {
    201: {
        "headers": {
            "Location": {
                "description": "Path of the new task: /api/{user_id}/tasks/{id}, the user id percent-encoded",
                "schema": {"type": "string"},
            }
        }
    }
}

router = APIRouter(
    prefix="/api/{user_id}/tasks",
    tags=["tasks"],
    responses={**AUTH_RESPONSES, **EDGE_RESPONSES},
)


class ListQuery(BaseModel):
    """The list's query string, validated as one model (one validation instead of five)."""

    model_config = ConfigDict(extra="ignore")

    status: StatusFilter = StatusFilter.all
    sort: SortField = SortField.created
    order: SortOrder = SortOrder.desc
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE), DECIMAL] = DEFAULT_PAGE_SIZE
    offset: Annotated[int, Field(ge=0, le=2**63 - 1), DECIMAL] = 0


class JSONBytes(Response):
    """A body already encoded by pydantic-core: FastAPI neither validates nor encodes it again."""

    media_type = "application/json"


def tasks_path(user_id: str) -> str:
    """`/api/<user id>/tasks/`, the id percent-encoded as one path segment (UTF-8, nothing kept).

    quote() leaves "." alone, and a segment that is "." or ".." is removed by URL normalisation
    (httpx, browsers) before the request is sent, so those dots are encoded too.
    """
    segment = quote(user_id, safe="")
    if segment in {".", ".."}:
        segment = segment.replace(".", "%2E")
    return f"/api/{segment}/tasks/"


def _found(task: TaskRow | None) -> JSONBytes:
    """A missing task and another user's task look the same: 404."""
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=TASK_NOT_FOUND)
    return JSONBytes(task_json(task))


@router.get("", response_model=list[TaskRead], responses=_listed)
async def list_tasks(owner: Owner, query: Annotated[ListQuery, Query()]) -> JSONBytes:
    """The caller's tasks, newest first by default; `X-Total-Count` counts all matches."""
    tasks, total = await crud.list_tasks(
        owner.database,
        owner.user_id,
        status=query.status,
        sort=query.sort,
        order=query.order,
        limit=query.limit,
        offset=query.offset,
    )
    return JSONBytes(tasks_json(tasks), headers={"X-Total-Count": str(total)})


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskRead, responses=_created)
async def create_task(owner: Owner, data: TaskCreate) -> JSONBytes:
    """Create a task; `Location` is its path."""
    # Built before the write: once the task is committed, nothing may fail and hide that it was.
    prefix = tasks_path(owner.user_id)
    task = await crud.create_task(owner.database, owner.user_id, data)
    location = f"{prefix}{task['id']}"
    return JSONBytes(task_json(task), status_code=status.HTTP_201_CREATED, headers={"Location": location})


@router.get("/{task_id}", response_model=TaskRead, responses=_not_found)
async def get_task(owner: Owner, task_id: TaskId) -> JSONBytes:
    return _found(await crud.get_task(owner.database, owner.user_id, task_id))


@router.put("/{task_id}", response_model=TaskRead, responses=_not_found)
async def update_task(owner: Owner, task_id: TaskId, changes: TaskUpdate) -> JSONBytes:
    """Partial update: only the fields sent change; `updated_at` always moves."""
    return _found(await crud.update_task(owner.database, owner.user_id, task_id, changes))


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_not_found,
)
async def delete_task(owner: Owner, task_id: TaskId) -> Response:
    if not await crud.delete_task(owner.database, owner.user_id, task_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=TASK_NOT_FOUND)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/{task_id}/complete", response_model=TaskRead, responses=_not_found)
async def toggle_task(
    owner: Owner,
    task_id: TaskId,
    body: Annotated[TaskCompletion | None, Body()] = None,
) -> JSONBytes:
    """Flip completion in one atomic statement, or set it when the body says `completed`."""
    completed = body.completed if body is not None else None
    return _found(await crud.toggle_task(owner.database, owner.user_id, task_id, completed))
