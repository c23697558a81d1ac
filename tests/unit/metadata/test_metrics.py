"""Jobs by state (the job index's per-state sets and their collector) and the queue-depth collector."""

from __future__ import annotations

import pytest

from services.metadata.app import create_app
from services.metadata.index import JobIndex
from services.metadata.metrics import JobsByStateCollector, QueueDepthCollector
from services.metadata.records import JobRecord
from services.metadata.store import JobStore
from shared.broker import QueueCounts
from shared.config import load_settings
from shared.errors import BrokerUnavailable, JobStoreUnavailable
from shared.jobs import JobErrorInfo, JobStatus, manifest_key
from shared.messages import JobEvent
from shared.storage import LocalStorage

PREFIX = "unit:"


@pytest.fixture
def index(redis_client) -> JobIndex:
    return JobIndex(redis_client, PREFIX)


@pytest.fixture
def store(redis_client, tmp_path, index) -> JobStore:
    return JobStore(redis_client, PREFIX, LocalStorage(tmp_path / "storage"), observers=[index])


def new_job(store: JobStore, n: int) -> str:
    job_id = f"{n:032x}"
    store.create(JobRecord.new(job_id, "clip.mp4", 10))
    return job_id


def event(job_id: str, status: JobStatus, attempt: int = 1, **fields) -> JobEvent:
    return JobEvent(job_id=job_id, status=status, attempt=attempt, **fields)


def counts(index: JobIndex) -> dict[str, int]:
    return {status.value: n for status, n in index.count_by_state().items() if n}


# --- jobs by state, from the index ---------------------------------------------------------------
def test_every_state_is_counted_even_with_no_job(index):
    assert index.count_by_state() == dict.fromkeys(JobStatus, 0)


def test_transitions_move_jobs_between_the_counts(store, index):
    a, b, c = (new_job(store, n) for n in (1, 2, 3))
    assert counts(index) == {"queued": 3}
    store.apply(event(a, JobStatus.PROCESSING))
    store.apply(event(b, JobStatus.PROCESSING))
    store.apply(event(a, JobStatus.COMPLETED))
    store.apply(event(b, JobStatus.FAILED, error=JobErrorInfo(code="not_media", message="no")))
    assert counts(index) == {"queued": 1, "completed": 1, "failed": 1}
    store.apply(event(c, JobStatus.PROCESSING))
    store.apply(event(c, JobStatus.PROCESSING, attempt=2))  # a redelivery: same state
    store.apply(event(a, JobStatus.PROCESSING, attempt=3))  # late: changes nothing
    assert counts(index) == {"processing": 1, "completed": 1, "failed": 1}


def test_forgetting_a_job_uncounts_it(store, index):
    a, b = new_job(store, 1), new_job(store, 2)
    store.apply(event(b, JobStatus.PROCESSING))
    store.delete(a)
    store.purge(b)
    assert counts(index) == {}


def test_after_redis_lost_its_data_the_rebuilt_index_counts_every_job(store, index, redis_client):
    a, _ = new_job(store, 1), new_job(store, 2)
    store.apply(event(a, JobStatus.PROCESSING))
    redis_client.flushdb()
    index.rebuild(JobRecord.model_validate_json(store.storage.get_bytes(manifest_key(f"{n:032x}"))) for n in (1, 2))
    assert counts(index) == {"queued": 1, "processing": 1}


def test_counts_of_a_dead_redis_raise_job_store_unavailable(index, server):
    server.connected = False
    with pytest.raises(JobStoreUnavailable):
        index.count_by_state()


# --- the collectors ---------------------------------------------------------------------------------
def samples(collector) -> dict[tuple[str, str], float]:
    return {
        (sample.name, next(iter(sample.labels.values()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def test_jobs_by_state_collector_reports_each_state(store, index):
    new_job(store, 1)
    reported = samples(JobsByStateCollector(index))
    assert reported[("siphon_jobs", "queued")] == 1
    assert reported[("siphon_jobs", "completed")] == 0


def test_jobs_by_state_collector_reports_nothing_while_redis_is_down(index, server):
    server.connected = False
    assert samples(JobsByStateCollector(index)) == {}


def test_metadata_app_serves_jobs_by_state_at_metrics(store, index):
    new_job(store, 1)
    app = create_app(load_settings(), store=store, control=object(), index=index)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'siphon_jobs{state="queued"} 1.0' in text


class FakeQueues:
    """Answers ``read_counts`` from a dict, or raises; records each look."""

    def __init__(self, counts: dict[str, QueueCounts]):
        self.counts = counts
        self.down = False
        self.looks = 0

    def __call__(self, names: list[str]) -> dict[str, QueueCounts]:
        self.looks += 1
        if self.down:
            raise BrokerUnavailable("RabbitMQ unreachable")
        return {name: self.counts[name] for name in names if name in self.counts}


QUEUES = {"conversion": "p.conversion", "dead_letter": "p.dead-letter"}


def test_queue_depth_collector_reports_messages_and_consumers_by_queue_label():
    queues = FakeQueues({"p.conversion": QueueCounts(7, 2), "p.dead-letter": QueueCounts(1, 0)})
    reported = samples(QueueDepthCollector(QUEUES, queues))
    assert reported == {
        ("siphon_queue_messages", "conversion"): 7,
        ("siphon_queue_messages", "dead_letter"): 1,
        ("siphon_queue_consumers", "conversion"): 2,
        ("siphon_queue_consumers", "dead_letter"): 0,
    }


def test_queue_depth_is_read_once_per_cache_period():
    now = [100.0]
    queues = FakeQueues({"p.conversion": QueueCounts(7, 2)})
    collector = QueueDepthCollector(QUEUES, queues, cache_seconds=5, clock=lambda: now[0])
    for _ in range(3):
        samples(collector)
    queues.counts["p.conversion"] = QueueCounts(3, 2)
    now[0] += 4.9
    assert samples(collector)[("siphon_queue_messages", "conversion")] == 7
    now[0] += 0.1
    assert samples(collector)[("siphon_queue_messages", "conversion")] == 3
    assert queues.looks == 2


def test_an_unreachable_broker_reports_no_depth_and_is_not_asked_again_at_once():
    now = [100.0]
    queues = FakeQueues({})
    queues.down = True
    collector = QueueDepthCollector(QUEUES, queues, cache_seconds=5, clock=lambda: now[0])
    assert samples(collector) == {} and samples(collector) == {}
    assert queues.looks == 1
