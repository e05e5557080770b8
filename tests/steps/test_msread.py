"""read_chunks: every row exactly once, in order, whatever the chunk size; writes land on the right rows."""
import numpy as np
import pytest
from casacore import tables

from orca_steps.msread import cell_bytes, flag_rows_where, read_chunks, tile_rows

N_ROWS = 37  # not a multiple of any chunk size below
SHAPE = (3, 4)


@pytest.fixture
def table(tmp_path):
    desc = tables.maketabdesc([tables.makearrcoldesc("DATA", 0j, shape=list(SHAPE), valuetype="complex"),
                               tables.makearrcoldesc("FLAG", False, shape=list(SHAPE)),
                               tables.makescacoldesc("TIME", 0.0),
                               tables.makescacoldesc("FLAG_ROW", False),
                               tables.makescacoldesc("NAME", "")])
    tab = tables.table(str(tmp_path / "t.tab"), desc, nrow=N_ROWS, ack=False)
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(N_ROWS, *SHAPE)) + 1j * rng.normal(size=(N_ROWS, *SHAPE))).astype(np.complex64)
    tab.putcol("DATA", data)
    tab.putcol("FLAG", rng.random((N_ROWS, *SHAPE)) > 0.5)
    tab.putcol("TIME", np.arange(N_ROWS) * 10.0)
    tab.putcol("NAME", [f"row{k}" for k in range(N_ROWS)])
    yield tab
    tab.close()


@pytest.mark.parametrize("rows_per_chunk", [1, 5, 8, 36, 37, 100])
def test_every_row_once_in_order(table, rows_per_chunk):
    columns = ["DATA", "FLAG", "TIME", "NAME"]
    assert [cell_bytes(table, c) for c in columns[:3]] == [3 * 4 * 8, 3 * 4, 8]  # complex64, bool, double
    row_bytes = sum(cell_bytes(table, c) for c in columns)
    chunks = list(read_chunks(table, columns, chunk_bytes=rows_per_chunk * row_bytes))
    assert [c.start for c in chunks] == list(range(0, N_ROWS, rows_per_chunk))
    assert sum(c.n for c in chunks) == N_ROWS
    got = {col: [] for col in columns}
    for chunk in read_chunks(table, columns, chunk_bytes=rows_per_chunk * row_bytes):
        for col in columns:
            got[col].append(np.array(chunk[col]))  # copies: the buffers are reused
    for col in columns:
        assert np.array_equal(np.concatenate(got[col]), np.asarray(table.getcol(col))), col


def test_put_and_span_write_the_chunks_rows(table):
    time_before, flag_before = table.getcol("TIME"), table.getcol("FLAG")
    for chunk in read_chunks(table, ["TIME", "FLAG"], chunk_bytes=3 * (8 + 12)):  # 3 rows a chunk
        chunk.put("TIME", chunk["TIME"] + 1.0)
        if chunk.n == 3:
            span = chunk.span(1, 3)  # the chunk's last two rows
            span["FLAG"][:] = True
            span.put("FLAG", span["FLAG"])
    assert np.array_equal(table.getcol("TIME"), time_before + 1.0)
    expected = flag_before.copy()
    for start in range(0, N_ROWS - 2, 3):
        expected[start + 1:start + 3] = True
    assert np.array_equal(table.getcol("FLAG"), expected)


def test_an_empty_table_yields_nothing(tmp_path):
    desc = tables.maketabdesc([tables.makescacoldesc("TIME", 0.0)])
    with tables.table(str(tmp_path / "e.tab"), desc, nrow=0, ack=False) as tab:
        assert list(read_chunks(tab, ["TIME"])) == []


def test_flag_rows_where_flags_exactly_the_rows_hit(table):
    flag_before, time = table.getcol("FLAG"), table.getcol("TIME")
    hit = np.isin(time, [20.0, 30.0, 170.0, 360.0])  # rows 2, 3, 17 and the last: a span with rows between hits
    assert flag_rows_where(table, ["TIME"], lambda c: np.isin(c["TIME"], [20.0, 30.0, 170.0, 360.0])) == 4
    flag = table.getcol("FLAG")
    assert flag[hit].all() and np.array_equal(flag[~hit], flag_before[~hit])
    assert np.array_equal(table.getcol("FLAG_ROW"), hit)


def test_chunks_are_whole_tiles_of_a_tiled_column(tmp_path):
    """DATA in tiles of 7 rows: chunks of about 20 rows become 14 (a chunk edge inside a tile reads it
    twice); a chunk smaller than a tile stays as asked; every row still comes once, in order."""
    desc = tables.maketabdesc([tables.makearrcoldesc("DATA", 0j, shape=list(SHAPE), valuetype="complex")])
    dminfo = {"*1": {"TYPE": "TiledColumnStMan", "NAME": "tiled", "COLUMNS": ["DATA"],
                     "SPEC": {"DEFAULTTILESHAPE": np.array([4, 3, 7], dtype=np.int32)}}}
    with tables.table(str(tmp_path / "tiled.tab"), desc, nrow=N_ROWS, dminfo=dminfo, ack=False) as tab:
        tab.putcol("DATA", np.arange(N_ROWS * 12).reshape(N_ROWS, *SHAPE).astype(np.complex64))
        assert tile_rows(tab, "DATA") == 7
        row_bytes = cell_bytes(tab, "DATA")
        assert [c.start for c in read_chunks(tab, ["DATA"], chunk_bytes=20 * row_bytes)] == [0, 14, 28]
        assert [c.start for c in read_chunks(tab, ["DATA"], chunk_bytes=5 * row_bytes)] == list(range(0, N_ROWS, 5))
        got = np.concatenate([np.array(c["DATA"]) for c in read_chunks(tab, ["DATA"], chunk_bytes=20 * row_bytes)])
        assert np.array_equal(got, tab.getcol("DATA"))


def test_an_untiled_column_keeps_the_chunk_size_asked(table):
    assert tile_rows(table, "DATA") == 1
