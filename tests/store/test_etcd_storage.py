"""What only the etcd back end has to get right: endpoints, failover, and etcd's own rules."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from conftest import EtcdServer, _free_ports

from kubelite.store import CompactedError, EtcdStorage, StoreError

from .helpers import collect

pytestmark = pytest.mark.etcd


@pytest.fixture
async def make_etcd(etcd_server: EtcdServer) -> AsyncIterator[Callable[..., EtcdStorage]]:
    """EtcdStorage objects on the session's etcd, in one fresh namespace; all closed afterwards."""
    made: list[EtcdStorage] = []
    namespace = f"/test-{uuid.uuid4().hex}"

    def make(endpoints: list[str] | None = None) -> EtcdStorage:
        made.append(EtcdStorage(endpoints or [etcd_server.url], prefix=namespace))
        return made[-1]

    yield make
    for store in made:
        await store.close()


async def test_fails_over_to_an_endpoint_that_answers(
    make_etcd: Callable[..., EtcdStorage], etcd_server: EtcdServer
) -> None:
    [dead] = _free_ports(1)
    store = make_etcd([f"http://127.0.0.1:{dead}", etcd_server.url])
    await store.start()
    kv = await store.create("/x", b"v")
    watch = await store.watch("/", after_revision=kv.mod_revision - 1)
    assert [e.kv for e in await collect(watch, 1)] == [kv]
    watch.close()


async def test_unreachable_etcd_is_explained(make_etcd: Callable[..., EtcdStorage]) -> None:
    dead = _free_ports(2)
    store = make_etcd([f"http://127.0.0.1:{port}" for port in dead])
    with pytest.raises(StoreError, match="cannot reach etcd") as caught:
        await store.start()
    assert str(dead[0]) in str(caught.value)


async def test_compaction_by_another_client_is_discovered(make_etcd: Callable[..., EtcdStorage]) -> None:
    store, other = make_etcd(), make_etcd()
    await store.start()
    await other.start()
    for i in range(20):
        await store.create(f"/k/{i}", b"v")
    target = await store.current_revision() - 5
    await other.compact(target)
    assert await store.compacted_revision() == target
    with pytest.raises(CompactedError) as caught:
        await store.list("/k/", revision=target - 1)
    assert caught.value.compacted == target


async def test_namespaces_do_not_see_each_other(etcd_server: EtcdServer) -> None:
    one = EtcdStorage([etcd_server.url], prefix="/ns-one")
    two = EtcdStorage([etcd_server.url], prefix="/ns-two/")
    await one.start()
    await two.start()
    try:
        watch = await two.watch("/")
        await one.create("/shared", b"one")
        kv = await two.create("/shared", b"two")
        assert [e.kv for e in await collect(watch, 1)] == [kv]
        assert [kv.value for kv in (await one.list("/")).items] == [b"one"]
        watch.close()
    finally:
        await one.close()
        await two.close()
