"""The agent's on-disk upload queue: order, bound, restart, torn writes (no portal needed)."""

from worker.edge.upload_queue import UploadQueue


def test_oldest_first_and_it_survives_a_restart(tmp_path):
    queue = UploadQueue(tmp_path, max_items=10)
    keys = [queue.put(f"img{i}".encode(), f"{i}.jpg", {"hard": True}, 7) for i in range(3)]
    reopened = UploadQueue(tmp_path, max_items=10)
    assert len(reopened) == 3
    item = reopened.oldest()
    assert (item.key, item.image, item.version_id) == (keys[0], b"img0", 7)
    reopened.done(item)
    assert reopened.oldest().key == keys[1]
    assert reopened.put(b"img3", "3.jpg", {}, 7) != keys[2]
    assert [UploadQueue(tmp_path).oldest().key] == [keys[1]]
    assert UploadQueue(tmp_path).counters["uploaded"] == 1


def test_bounded_the_oldest_is_dropped_and_counted(tmp_path):
    queue = UploadQueue(tmp_path, max_items=3)
    for i in range(5):
        queue.put(f"img{i}".encode(), f"{i}.jpg", {}, None)
    assert len(queue) == 3
    assert queue.oldest().image == b"img2"
    assert queue.counters["dropped"] == 2


def test_an_unreadable_item_is_dropped_not_retried_forever(tmp_path):
    queue = UploadQueue(tmp_path)
    queue.put(b"a", "a.jpg", {}, None)
    queue.put(b"b", "b.jpg", {}, None)
    first = sorted(tmp_path.glob("*.json.item"))[0]
    first.write_text("{torn")
    assert queue.oldest().image == b"b"
    assert queue.counters["dropped"] == 1


def test_leftovers_of_a_crash_in_the_middle_of_a_put_are_cleaned(tmp_path):
    queue = UploadQueue(tmp_path)
    queue.put(b"a", "a.jpg", {}, None)
    (tmp_path / "000000000009-abc.img").write_bytes(b"orphan")  # its metadata never written
    (tmp_path / ".000000000010-def.img.1234.tmp").write_bytes(b"half")
    reopened = UploadQueue(tmp_path)
    assert len(reopened) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".img", ".tmp")) == [
        next(tmp_path.glob("*.img")).name
    ]
    assert reopened.oldest().image == b"a"


def test_an_item_whose_key_is_not_the_one_in_its_name_is_dropped(tmp_path):
    """The key is sent as a header: a damaged one ("\\r\\n", not Latin-1) could never be sent
    and would hold up every later item, so it must match the key its file was named with."""
    import json

    queue = UploadQueue(tmp_path)
    queue.put(b"a", "a.jpg", {}, None)
    second = queue.put(b"b", "b.jpg", {}, None)
    first = sorted(tmp_path.glob("*.json.item"))[0]
    meta = json.loads(first.read_text())
    first.write_text(json.dumps(meta | {"key": "abc\r\nX-Injected: 1"}))
    item = queue.oldest()
    assert (item.key, item.image) == (second, b"b")
    assert queue.counters["dropped"] == 1


def test_the_bounds_hold_while_an_item_is_being_uploaded(tmp_path):
    """The item being uploaded is never dropped; a new one that does not fit beside it used to be
    written anyway, past the bound in bytes (or in items). Now the new one is dropped."""
    queue = UploadQueue(tmp_path, max_items=100, max_bytes=3000)
    queue.put(b"a" * 2000, "a.jpg", {}, None)
    in_flight = queue.oldest()
    assert queue.put(b"b" * 1500, "b.jpg", {}, None) is None
    assert queue.bytes <= 3000 and len(queue) == 1 and queue.counters["dropped"] == 1
    queue.done(in_flight)
    assert queue.put(b"b" * 1500, "b.jpg", {}, None) is not None

    one = UploadQueue(tmp_path / "one", max_items=1)
    one.put(b"a", "a.jpg", {}, None)
    uploading = one.oldest()
    assert one.put(b"b", "b.jpg", {}, None) is None and len(one) == 1
    assert one.oldest().key == uploading.key
