"""Storage helpers from the client and from workers, on local files and on the S3 test server."""

import os
import socket
import uuid

import pytest

import volley

S3 = {"endpoint": "http://127.0.0.1:9900", "access_key": "volley", "secret_key": "volley-secret"}


def _s3_up():
    try:
        with socket.create_connection(("127.0.0.1", 9900), timeout=1):
            return True
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail("the S3 test server is not running on 127.0.0.1:9900 (scripts/services starts it)")
        return False


@pytest.fixture(params=["file", "s3"])
def base(request, tmp_path):
    if request.param == "file":
        yield f"file://{tmp_path}", {}
        return
    if not _s3_up():
        pytest.skip("the S3 test server is not running on 127.0.0.1:9900")
    url = f"s3://volley-test/pytest-{uuid.uuid4().hex[:12]}"
    yield url, S3
    store = volley.Storage(url, **S3)
    store.delete_objects(store.list_keys())


def test_objects_are_put_read_whole_or_in_ranges_listed_and_deleted(base):
    url, options = base
    s = volley.Storage(url, **options)
    s.put_object("in/a.txt", b"0123456789")
    s.put_object("in/b.txt", "text as UTF-8")
    s.put_object("other", b"")
    assert s.get_object("in/a.txt") == b"0123456789"
    assert s.get_object("in/a.txt", range=(2, 5)) == b"234"
    assert s.get_object("in/a.txt", range=(7, None)) == b"789"
    assert s.list_keys("in/") == ["in/a.txt", "in/b.txt"]
    assert s.list_objects("in/") == [("in/a.txt", 10), ("in/b.txt", 13)]
    s.delete_object("in/a.txt")
    assert s.list_keys() == ["in/b.txt", "other"]
    with pytest.raises(RuntimeError):
        s.get_object("in/a.txt")


def write_part(w):
    store = w.storage(w.params["url"])
    store.put_object(f"part-{w.rank}", f"rank {w.rank} of {w.size}".encode())
    w.comm.barrier()
    # Every worker reads what the next one wrote.
    return store.get_object(f"part-{(w.rank + 1) % w.size}").decode()


def test_workers_read_and_write_storage_with_the_packs_settings(ex, base):
    url, options = base
    results = ex.burst(write_part, workers=3, granularity=2, params={"url": url}, storage=[url])
    assert results == [f"rank {(r + 1) % 3} of 3" for r in range(3)]
    assert volley.Storage(url, **options).list_keys() == ["part-0", "part-1", "part-2"]


def test_a_url_that_is_not_storage_is_refused_saying_what_is_accepted():
    with pytest.raises(ValueError, match="file://"):
        volley.Storage("ftp://somewhere/else")
