"""The six task endpoints under /api/{user_id}/tasks; every one needs the owner's bearer token."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from backend import crud
from backend.crud import SortField, SortOrder, StatusFilter, TaskRow
from backend.dependencies import Owner, TaskId
from backend.errors import AUTH_RESPONSES, EDGE_RESPONSES
from backend.models import ErrorDetail, TaskCompletion, TaskCreate, TaskRead, TaskUpdate, task_json, tasks_json

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
TASK_NOT_FOUND = "Task not found"

_not_found: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorDetail, "description": TASK_NOT_FOUND}
}
_listed: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "X-Total-Count": {"description": "Matching tasks before limit/offset", "schema": {"type": "integer"}}
        }
    }
}
_created: dict[int | str, dict[str, Any]] = {
    201: {"headers": {"Location": {"description": "Path of the new task", "schema": {"type": "string"}}}}
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
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=2**63 - 1)


class JSONBytes(Response):
    """A body already encoded by pydantic-core: FastAPI neither validates nor encodes it again."""

    media_type = "application/json"


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
async def create_task(
    owner: Owner,
    request: Request,
    data: TaskCreate,
) -> JSONBytes:
    task = await crud.create_task(owner.database, owner.user_id, data)
    location = request.app.url_path_for("get_task", user_id=owner.user_id, task_id=str(task["id"]))
    return JSONBytes(task_json(task), status_code=status.HTTP_201_CREATED, headers={"Location": str(location)})


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
