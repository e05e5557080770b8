"""fileio: a writer that fails leaves the old file (or nothing) and no temporary; CSV reads back as written."""
import csv
import json
import os

import pytest

from orca_steps.fileio import atomic_path, remove_stale_temps, temp_path, write_atomic, write_csv, write_json


class Boom(Exception):
    pass


def test_a_writer_that_raises_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "product.json"
    write_json(out, {"v": 1})
    with pytest.raises(Boom):
        with atomic_path(out) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise Boom()
    assert json.loads(out.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["product.json"]


def test_a_writer_that_raises_before_the_first_write_leaves_nothing(tmp_path):
    out = tmp_path / "sub" / "new.csv"
    with pytest.raises(Boom):
        write_csv(out, ({"a": 1} if k == 0 else _boom() for k in range(2)), ["a"])
    assert list(out.parent.iterdir()) == []


def _boom():
    raise Boom()


def test_the_final_name_only_appears_complete(tmp_path):
    out = tmp_path / "x.txt"
    with atomic_path(out) as tmp:
        tmp.write_text("half")
        assert not out.exists() and tmp.parent == out.parent and tmp.name.startswith(".")
        assert str(os.getpid()) in tmp.name
    assert out.read_text() == "half"


def test_a_directory_replaces_an_existing_one_whole(tmp_path):
    out = tmp_path / "table"
    out.mkdir()
    (out / "old_only").write_text("old")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "table.dat").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["table.dat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    out = tmp_path / "a.json"
    dead = out.with_name(".a.json.99999.tmp")
    dead.mkdir()
    (tmp_path / ".b.json.99999.tmp").write_text("another file's")
    remove_stale_temps(out)
    assert not dead.exists() and (tmp_path / ".b.json.99999.tmp").exists()
    assert temp_path(out).name.startswith(f".a.json.{os.getpid()}-") and temp_path(out) != temp_path(out)


def test_bytes_text_and_csv(tmp_path):
    assert write_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    rows = [{"name": 'Cyg "A", core', "flux": 1.5}, {"name": "Cas A"}]
    path = write_csv(tmp_path / "t.csv", rows, ["name", "flux"])
    assert path.read_text().splitlines()[0] == "name,flux"
    with open(path, newline="") as fh:
        assert list(csv.DictReader(fh)) == [{"name": 'Cyg "A", core', "flux": "1.5"}, {"name": "Cas A", "flux": ""}]
