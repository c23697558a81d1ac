"""The job index on fakeredis (``services/metadata/index.py``): newest first, by state, in pages."""

from __future__ import annotations

import fakeredis
import pytest

from services.metadata.index import JobIndex, page_size, parse_cursor, status_filter
from shared.errors import RequestRejected
from shared.jobs import Job, JobStatus

PREFIX = "unit:"


def job(n: int, status: JobStatus = JobStatus.COMPLETED, created_at: float | None = None) -> Job:
    return Job.new(f"{n:032x}", "a.mp4", 1).model_copy(
        update={"status": status, "created_at": 1000.0 + n if created_at is None else created_at}
    )


@pytest.fixture
def index() -> JobIndex:
    return JobIndex(fakeredis.FakeRedis(), PREFIX)


def add(index: JobIndex, *jobs: Job) -> None:
    with index.redis.pipeline() as pipe:
        for one in jobs:
            index.within(pipe, None, one)
        pipe.execute()


def all_pages(index: JobIndex, status=None, limit=2) -> list[str]:
    listed, cursor = [], None
    while True:
        page = index.page(status, limit, cursor)
        listed += page.job_ids
        if page.next_cursor is None:
            return listed
        cursor = page.next_cursor


def test_pages_list_every_job_once_newest_first_even_with_equal_times(index):
    jobs = [job(n) for n in range(5)] + [job(n, created_at=1002.0) for n in range(10, 13)]
    add(index, *jobs)
    listed = all_pages(index)
    assert sorted(listed) == sorted(j.job_id for j in jobs)
    assert [index.redis.zscore(index.key(), i) for i in listed] == sorted((j.created_at for j in jobs), reverse=True)


def test_a_state_change_moves_the_job_between_state_lists(index):
    queued = job(1, JobStatus.QUEUED)
    add(index, queued)
    with index.redis.pipeline() as pipe:
        index.within(pipe, queued, queued.model_copy(update={"status": JobStatus.PROCESSING}))
        pipe.execute()
    assert all_pages(index, JobStatus.QUEUED) == []
    assert all_pages(index, JobStatus.PROCESSING) == [queued.job_id]
    with index.redis.pipeline() as pipe:
        index.forgotten(pipe, queued.job_id)
        pipe.execute()
    assert all_pages(index) == [] and all_pages(index, JobStatus.PROCESSING) == []


def test_rebuild_indexes_every_job(index):
    assert index.is_missing()
    assert index.rebuild([job(1), job(2, JobStatus.FAILED)]) == 2
    assert all_pages(index) == [job(2).job_id, job(1).job_id]
    assert all_pages(index, JobStatus.FAILED) == [job(2).job_id]


@pytest.mark.parametrize(
    "parse",
    [
        lambda: page_size("0"),
        lambda: page_size("101"),
        lambda: page_size("-1"),
        lambda: page_size("x"),
        lambda: status_filter("done"),
        lambda: parse_cursor("1000.0"),
        lambda: parse_cursor("abc_def"),
    ],
)
def test_bad_parameters_are_400(parse):
    with pytest.raises(RequestRejected):
        parse()
